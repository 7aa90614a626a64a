//! A userspace network impairment for line's tests: the kernel here has no `netem` qdisc, so
//! this program stands between two network namespaces, one TUN device in each, and hands every
//! IP packet from one side to the other late, out of order, or not at all, as a profile says.
//! The TCP stacks on both sides see a real lossy, jittery, narrow path and retransmit as they
//! would on one.
//!
//! The impairment itself ([`Netem`]) is sans-IO and runs on any clock, so its behaviour is
//! tested on a virtual one; [`router`] moves packets between the devices on the real clock, and
//! [`control`] reads the commands a test gives a running link (change the profile, take the
//! link down for a while, print what happened so far).

pub mod control;
pub mod impairment;
pub mod profile;
pub mod router;

pub use control::{Command, CommandError};
pub use impairment::{Direction, DirectionStats, MAX_IN_FLIGHT, Netem};
pub use profile::{PROFILES, Profile, ProfileError};
