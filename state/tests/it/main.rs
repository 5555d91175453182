//! Integration tests of the state model: the invalid corpus, loading bounds, the examples,
//! rendering, the schema and the YAML reader.

mod calendar;
mod changes;
mod corpus;
mod examples;
mod hosts;
mod limits;
mod properties;
mod render;
mod resources;
mod schema;
mod support;
mod yaml;
