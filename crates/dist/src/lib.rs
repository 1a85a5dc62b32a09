//! `kindling-dist`: data-parallel gradient synchronisation for every burn backend.
//!
//! Nothing is implemented yet: this crate holds its place in the dependency graph
//! (`trainer -> dist -> burn`, and never a model) so that the workspace, CI and packaging are in
//! place first.
