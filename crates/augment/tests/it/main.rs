//! Integration tests of kindling-augment.

mod conformance;
