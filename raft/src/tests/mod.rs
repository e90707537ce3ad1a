//! Tests of the stores and the node: openraft's storage suite, apply, snapshots, and a
//! single-node `MetaNode` across a restart.

mod apply;
mod backup;
mod gc;
mod node;
mod read_cache;
mod snapshot;
mod suite;
mod support;
