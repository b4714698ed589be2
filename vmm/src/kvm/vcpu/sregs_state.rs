//! The system registers as saved: the image of KVM's `struct kvm_sregs`, with its segments
//! (`struct kvm_segment`) and descriptor tables (`struct kvm_dtable`).

use kvm_bindings::{kvm_dtable, kvm_segment, kvm_sregs};

use crate::persist::c_layout::{c_layout_serde, CLayout, LayoutReader, LayoutWriter};
use crate::persist::{in_range, StateError};

/// A segment register with its hidden descriptor cache (24 bytes in C).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentState {
    /// Base address.
    pub base: u64,
    /// Limit, in bytes (granularity applied).
    pub limit: u32,
    /// Selector.
    pub selector: u16,
    /// Descriptor type (0..=15).
    pub type_: u8,
    /// P: present (0 or 1).
    pub present: u8,
    /// DPL (0..=3).
    pub dpl: u8,
    /// D/B: default operand size (0 or 1).
    pub db: u8,
    /// S: code or data, not system (0 or 1).
    pub s: u8,
    /// L: 64-bit code (0 or 1).
    pub l: u8,
    /// G: limit in pages (0 or 1).
    pub g: u8,
    /// AVL (0 or 1).
    pub avl: u8,
    /// The segment is unusable (0 or 1).
    pub unusable: u8,
    /// C padding, kept as KVM filled it.
    pub padding: u8,
}

impl SegmentState {
    /// Refuses attribute fields a descriptor cannot hold.
    fn validate(&self, name: &str) -> Result<(), StateError> {
        in_range(&format!("vCPU {name} descriptor type"), self.type_, 0, 15)?;
        in_range(&format!("vCPU {name} DPL"), self.dpl, 0, 3)?;
        for (bit, value) in [
            ("present", self.present),
            ("D/B", self.db),
            ("S", self.s),
            ("L", self.l),
            ("G", self.g),
            ("AVL", self.avl),
            ("unusable", self.unusable),
        ] {
            in_range(&format!("vCPU {name} {bit} bit"), value, 0, 1)?;
        }
        Ok(())
    }
}

impl CLayout for SegmentState {
    const C_NAME: &'static str = "kvm_segment";
    const SIZE: usize = 24;

    fn write(&self, out: &mut LayoutWriter) {
        out.u64(self.base);
        out.u32(self.limit);
        out.u16(self.selector);
        out.bytes(&[
            self.type_,
            self.present,
            self.dpl,
            self.db,
            self.s,
            self.l,
            self.g,
            self.avl,
            self.unusable,
            self.padding,
        ]);
    }

    fn read(input: &mut LayoutReader<'_>) -> Option<Self> {
        let (base, limit, selector) = (input.u64()?, input.u32()?, input.u16()?);
        let [type_, present, dpl, db, s, l, g, avl, unusable, padding] = input.array()?;
        Some(Self { base, limit, selector, type_, present, dpl, db, s, l, g, avl, unusable, padding })
    }
}

/// GDTR or IDTR (16 bytes in C).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DtableState {
    /// Base address.
    pub base: u64,
    /// Limit.
    pub limit: u16,
    /// C padding, kept as KVM filled it.
    pub padding: [u16; 3],
}

impl CLayout for DtableState {
    const C_NAME: &'static str = "kvm_dtable";
    const SIZE: usize = 16;

    fn write(&self, out: &mut LayoutWriter) {
        out.u64(self.base);
        out.u16(self.limit);
        for p in self.padding {
            out.u16(p);
        }
    }

    fn read(input: &mut LayoutReader<'_>) -> Option<Self> {
        Some(Self { base: input.u64()?, limit: input.u16()?, padding: [input.u16()?, input.u16()?, input.u16()?] })
    }
}

/// Segments, descriptor tables, control registers, EFER, APIC base.
///
/// Saved as the 312-byte image of `struct kvm_sregs` (see [`crate::persist::c_layout`]).
/// That encoding is frozen (see [`crate::persist`]): any change is a new version type plus
/// a conversion, never an edit of this one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SregsState {
    /// CS.
    pub cs: SegmentState,
    /// DS.
    pub ds: SegmentState,
    /// ES.
    pub es: SegmentState,
    /// FS.
    pub fs: SegmentState,
    /// GS.
    pub gs: SegmentState,
    /// SS.
    pub ss: SegmentState,
    /// Task register.
    pub tr: SegmentState,
    /// LDTR.
    pub ldt: SegmentState,
    /// GDTR.
    pub gdt: DtableState,
    /// IDTR.
    pub idt: DtableState,
    /// CR0.
    pub cr0: u64,
    /// CR2.
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 (TPR).
    pub cr8: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// IA32_APIC_BASE.
    pub apic_base: u64,
    /// External interrupts KVM had queued, one bit per vector.
    pub interrupt_bitmap: [u64; 4],
}

impl SregsState {
    /// The segments with their names, in C order.
    fn segments(&self) -> [(&'static str, &SegmentState); 8] {
        [
            ("CS", &self.cs),
            ("DS", &self.ds),
            ("ES", &self.es),
            ("FS", &self.fs),
            ("GS", &self.gs),
            ("SS", &self.ss),
            ("TR", &self.tr),
            ("LDTR", &self.ldt),
        ]
    }

    /// Refuses segment attributes no descriptor holds.
    pub fn validate(&self) -> Result<(), StateError> {
        self.segments().iter().try_for_each(|(name, seg)| seg.validate(name))
    }
}

impl CLayout for SregsState {
    const C_NAME: &'static str = "kvm_sregs";
    const SIZE: usize = 312;

    fn write(&self, out: &mut LayoutWriter) {
        for (_, seg) in self.segments() {
            out.nested(seg);
        }
        out.nested(&self.gdt);
        out.nested(&self.idt);
        for r in [self.cr0, self.cr2, self.cr3, self.cr4, self.cr8, self.efer, self.apic_base] {
            out.u64(r);
        }
        for word in self.interrupt_bitmap {
            out.u64(word);
        }
    }

    fn read(input: &mut LayoutReader<'_>) -> Option<Self> {
        Some(Self {
            cs: input.nested()?,
            ds: input.nested()?,
            es: input.nested()?,
            fs: input.nested()?,
            gs: input.nested()?,
            ss: input.nested()?,
            tr: input.nested()?,
            ldt: input.nested()?,
            gdt: input.nested()?,
            idt: input.nested()?,
            cr0: input.u64()?,
            cr2: input.u64()?,
            cr3: input.u64()?,
            cr4: input.u64()?,
            cr8: input.u64()?,
            efer: input.u64()?,
            apic_base: input.u64()?,
            interrupt_bitmap: [input.u64()?, input.u64()?, input.u64()?, input.u64()?],
        })
    }
}

c_layout_serde!(SregsState);

impl From<&kvm_segment> for SegmentState {
    fn from(k: &kvm_segment) -> Self {
        Self {
            base: k.base,
            limit: k.limit,
            selector: k.selector,
            type_: k.type_,
            present: k.present,
            dpl: k.dpl,
            db: k.db,
            s: k.s,
            l: k.l,
            g: k.g,
            avl: k.avl,
            unusable: k.unusable,
            padding: k.padding,
        }
    }
}

impl From<&SegmentState> for kvm_segment {
    fn from(s: &SegmentState) -> Self {
        kvm_segment {
            base: s.base,
            limit: s.limit,
            selector: s.selector,
            type_: s.type_,
            present: s.present,
            dpl: s.dpl,
            db: s.db,
            s: s.s,
            l: s.l,
            g: s.g,
            avl: s.avl,
            unusable: s.unusable,
            padding: s.padding,
        }
    }
}

impl From<&kvm_dtable> for DtableState {
    fn from(k: &kvm_dtable) -> Self {
        Self { base: k.base, limit: k.limit, padding: k.padding }
    }
}

impl From<&DtableState> for kvm_dtable {
    fn from(s: &DtableState) -> Self {
        kvm_dtable { base: s.base, limit: s.limit, padding: s.padding }
    }
}

impl From<&kvm_sregs> for SregsState {
    fn from(k: &kvm_sregs) -> Self {
        Self {
            cs: (&k.cs).into(),
            ds: (&k.ds).into(),
            es: (&k.es).into(),
            fs: (&k.fs).into(),
            gs: (&k.gs).into(),
            ss: (&k.ss).into(),
            tr: (&k.tr).into(),
            ldt: (&k.ldt).into(),
            gdt: (&k.gdt).into(),
            idt: (&k.idt).into(),
            cr0: k.cr0,
            cr2: k.cr2,
            cr3: k.cr3,
            cr4: k.cr4,
            cr8: k.cr8,
            efer: k.efer,
            apic_base: k.apic_base,
            interrupt_bitmap: k.interrupt_bitmap,
        }
    }
}

impl From<&SregsState> for kvm_sregs {
    fn from(s: &SregsState) -> Self {
        kvm_sregs {
            cs: (&s.cs).into(),
            ds: (&s.ds).into(),
            es: (&s.es).into(),
            fs: (&s.fs).into(),
            gs: (&s.gs).into(),
            ss: (&s.ss).into(),
            tr: (&s.tr).into(),
            ldt: (&s.ldt).into(),
            gdt: (&s.gdt).into(),
            idt: (&s.idt).into(),
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            cr8: s.cr8,
            efer: s.efer,
            apic_base: s.apic_base,
            interrupt_bitmap: s.interrupt_bitmap,
        }
    }
}
