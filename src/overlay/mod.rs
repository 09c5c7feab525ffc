//! Multi-host overlay networks: the host's VXLAN endpoint ([`Vxlan`]) and the VXLAN wire
//! format ([`wire`]). The per-network side (which VTEP a frame goes to, what a VTEP may send)
//! lives in the network's data path (`datapath/overlay.rs`) and switch (`switch::overlay`).

mod ring;
pub mod vxlan;
pub mod wire;

pub use ring::{OverlayRx, RECORD_HEADER};
pub use vxlan::{RxHarness, Vxlan, VxlanCounters, VxlanPort, VxlanStats, underlay_mtu};
