//! Where flow versions come from: building components from source,
//! inspecting and storing them, and the flows git repository that Update
//! pulls, builds and deploys.
//!
//! - [`deploy`]: building, inspecting and storing flow versions.
//! - [`repository`]: the flows git repository and Update.
//! - [`versions`]: the use cases (deploy, repository state, Update) the
//!   API, the console and `baton up` call.

pub mod deploy;
pub mod repository;
pub mod versions;
