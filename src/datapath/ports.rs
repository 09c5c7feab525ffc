//! The table of the network's TAP files, by port id: what the engine reads frames from and
//! writes them to. Dense storage so the per-frame lookup is one hash probe and an index.

use std::collections::HashMap;
use std::fs::File;

use switch::PortId;

/// TAP files by port id; dense storage for the per-frame lookup.
#[derive(Default)]
pub(super) struct Ports {
    files: Vec<(PortId, File)>,
    index: HashMap<u32, usize, foldhash::fast::RandomState>,
}

impl Ports {
    // `#[inline]`: called per frame from `engine.rs`, which may land in another codegen unit.
    #[inline]
    pub(super) fn get(&mut self, id: PortId) -> Option<&mut File> {
        let slot = *self.index.get(&id.0)?;
        Some(&mut self.files[slot].1)
    }

    pub(super) fn insert(&mut self, id: PortId, file: File) {
        self.index.insert(id.0, self.files.len());
        self.files.push((id, file));
    }

    pub(super) fn remove(&mut self, id: PortId) -> Option<File> {
        let slot = self.index.remove(&id.0)?;
        let (_, file) = self.files.swap_remove(slot);
        if let Some((moved, _)) = self.files.get(slot) {
            self.index.insert(moved.0, slot);
        }
        Some(file)
    }
}
