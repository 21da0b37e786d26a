//! The load-balancing core, without I/O: the service table a data plane must hold
//! ([`table`]), the IPVS schedulers that pick a destination for a new connection ([`sched`]),
//! the persistence templates ([`persistence`]), and the virtual-server state that turns checker
//! verdicts into table changes with keepalived's semantics ([`virtual_server`]).

pub mod persistence;
pub mod sched;
pub mod table;
pub mod virtual_server;
