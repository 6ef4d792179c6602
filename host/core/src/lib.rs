//! Baton's domain: the names of things, what a flow declares, who may do
//! what, and the request state machine. No I/O: the store, the runtime and
//! the server depend on this crate, never the other way round.
//!
//! # Layout
//!
//! - `ids`: [`ServerId`], [`Epoch`].
//! - `flow`: [`FlowProperties`], parsed once where a version is read.
//! - `lifecycle`: [`RequestStatus`], [`EventKind`] and the state machine,
//!   [`Transition`] with its [`Rule`]s.
//! - `role`: [`Role`].
//! - [`statistics`]: the statistics report folded from per-minute counts.
//! - [`store`]: the store port, its traits by aggregate and its rows.

mod flow;
mod ids;
mod lifecycle;
mod role;
pub mod statistics;
pub mod store;

pub use flow::{FlowProperties, MAX_RETRY_DELAY_MS, PropertiesError};
pub use ids::{Epoch, ServerId};
pub use lifecycle::{
    Actor, EventKind, Guard, OwnerAfter, OwnerHealth, Refusal, RequestState, RequestStatus, Rule,
    Transition,
};
pub use role::Role;
