//! The lineage graph of a store: which checkpoints each was made from (its recorded inputs)
//! and which were made from it, as the inspection command line draws it.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::CheckpointInfo;

/// Checkpoints and their recorded inputs, both ways. Inputs that have no checkpoint any more
/// are kept as nodes (a checkpoint made from them is stale).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineageGraph {
    /// Every table: a checkpoint, or an input named by one.
    tables: BTreeSet<String>,
    /// Table -> the tables it was made from.
    inputs: BTreeMap<String, BTreeSet<String>>,
    /// Table -> the tables made from it.
    dependents: BTreeMap<String, BTreeSet<String>>,
}

impl LineageGraph {
    /// The graph of `checkpoints` (as [`list_checkpoints`](crate::CheckpointStore::list_checkpoints)
    /// gives them).
    pub fn new(checkpoints: &[CheckpointInfo]) -> Self {
        let mut graph = Self::default();
        for info in checkpoints {
            graph.tables.insert(info.table_name.clone());
            for input in info.lineage.inputs.keys() {
                graph.tables.insert(input.clone());
                graph
                    .inputs
                    .entry(info.table_name.clone())
                    .or_default()
                    .insert(input.clone());
                graph
                    .dependents
                    .entry(input.clone())
                    .or_default()
                    .insert(info.table_name.clone());
            }
        }
        graph
    }

    /// Every table, sorted.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(String::as_str)
    }

    /// Whether the graph has `table`.
    pub fn contains(&self, table: &str) -> bool {
        self.tables.contains(table)
    }

    /// The tables `table` was made from, sorted.
    pub fn inputs(&self, table: &str) -> impl Iterator<Item = &str> {
        self.inputs
            .get(table)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// The tables made from `table`, sorted.
    pub fn dependents(&self, table: &str) -> impl Iterator<Item = &str> {
        self.dependents
            .get(table)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Every table made, directly or not, from `table` (not `table` itself), sorted.
    pub fn downstream(&self, table: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut next: Vec<&str> = self.dependents(table).collect();
        while let Some(t) = next.pop() {
            if t != table && seen.insert(t.to_owned()) {
                next.extend(self.dependents(t));
            }
        }
        seen
    }

    /// Every table `table` was made from, directly or not (not `table` itself), sorted.
    pub fn upstream(&self, table: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut next: Vec<&str> = self.inputs(table).collect();
        while let Some(t) = next.pop() {
            if t != table && seen.insert(t.to_owned()) {
                next.extend(self.inputs(t));
            }
        }
        seen
    }

    /// The part of the graph connected to `table` through its lineage: `table`, its upstream
    /// and its downstream, with the edges among them.
    pub fn around(&self, table: &str) -> LineageGraph {
        let mut keep = self.upstream(table);
        keep.extend(self.downstream(table));
        keep.insert(table.to_owned());
        let filter = |edges: &BTreeMap<String, BTreeSet<String>>| {
            edges
                .iter()
                .filter(|(t, _)| keep.contains(*t))
                .map(|(t, to)| {
                    let to: BTreeSet<String> =
                        to.iter().filter(|x| keep.contains(*x)).cloned().collect();
                    (t.clone(), to)
                })
                .filter(|(_, to)| !to.is_empty())
                .collect()
        };
        LineageGraph {
            inputs: filter(&self.inputs),
            dependents: filter(&self.dependents),
            tables: keep,
        }
    }

    /// The tables made from no other (the graph's sources), sorted.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.tables()
            .filter(|t| self.inputs.get(*t).is_none_or(BTreeSet::is_empty))
    }

    /// The graph in Graphviz's DOT language: an edge from each input to what was made from it.
    /// Table names are quoted, so any name is safe.
    pub fn to_dot(&self) -> String {
        let quote = |t: &str| format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = String::from("digraph lineage {\n  rankdir=LR;\n  node [shape=box];\n");
        for table in self.tables() {
            out += &format!("  {};\n", quote(table));
        }
        for (table, inputs) in &self.inputs {
            for input in inputs {
                out += &format!("  {} -> {};\n", quote(input), quote(table));
            }
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CheckpointVersion, Lineage};

    fn info(table: &str, inputs: &[&str]) -> CheckpointInfo {
        CheckpointInfo {
            table_name: table.to_owned(),
            created_at: None,
            row_count: None,
            description: None,
            key: None,
            lineage: Lineage {
                inputs: inputs
                    .iter()
                    .map(|i| ((*i).to_owned(), CheckpointVersion::Saved(None)))
                    .collect(),
                ..Lineage::default()
            },
        }
    }

    #[test]
    fn edges_both_ways_and_downstream() {
        let graph = LineageGraph::new(&[
            info("constraint", &[]),
            info("annotation", &[]),
            info("candidates", &["constraint", "annotation"]),
            info("report", &["candidates", "gone"]),
        ]);
        assert_eq!(
            graph.tables().collect::<Vec<_>>(),
            ["annotation", "candidates", "constraint", "gone", "report"]
        );
        assert_eq!(
            graph.inputs("candidates").collect::<Vec<_>>(),
            ["annotation", "constraint"]
        );
        assert_eq!(
            graph.dependents("constraint").collect::<Vec<_>>(),
            ["candidates"]
        );
        assert_eq!(
            graph
                .downstream("constraint")
                .into_iter()
                .collect::<Vec<_>>(),
            ["candidates", "report"]
        );
        assert_eq!(
            graph.sources().collect::<Vec<_>>(),
            ["annotation", "constraint", "gone"]
        );
        assert_eq!(
            graph.upstream("report").into_iter().collect::<Vec<_>>(),
            ["annotation", "candidates", "constraint", "gone"]
        );
        let around = graph.around("annotation");
        assert_eq!(
            around.tables().collect::<Vec<_>>(),
            ["annotation", "candidates", "report"]
        );
        assert_eq!(around.inputs("report").collect::<Vec<_>>(), ["candidates"]);
        let dot = graph.to_dot();
        assert!(
            dot.contains("  \"constraint\" -> \"candidates\";\n"),
            "{dot}"
        );
        assert!(dot.contains("  \"gone\" -> \"report\";\n"), "{dot}");
        assert!(dot.starts_with("digraph lineage {") && dot.ends_with("}\n"));
    }
}
