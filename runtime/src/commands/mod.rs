//! One module per command, each owning its arguments and its `execute`. Commands share
//! only `crate::common` (flags several take), `crate::master_key` and `crate::report`;
//! they never import each other.

pub mod audit;
pub mod check;
pub mod compile;
pub mod init;
pub mod mcp;
pub mod member;
pub mod register;
pub mod run;
pub mod scripts;
pub mod secret;
pub mod serve;
pub mod store;
pub mod token;
