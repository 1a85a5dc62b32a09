//! `kindling-model`: the AlexNet family for burn, with torchinfo-style introspection.
//!
//! Nothing is implemented yet: this crate holds its place in the dependency graph
//! (`trainer -> model -> burn`) so that the workspace, CI and packaging are in place first.
