//! The target description gdb reads (`qXfer:features:read:target.xml`).
//!
//! gdb numbers remote registers in document order, and that order is the layout of the
//! `g` packet, so this file and [`crate::regs::KernelRegs::gdb_serialize`] must agree (a
//! unit test checks it). The features:
//! - `org.gnu.gdb.i386.core`: rax..r15, rip, eflags, cs ss ds es fs gs, st0-7 and the x87
//!   control registers: exactly the set gdb's amd64 support requires, so gdb recognises
//!   the architecture and its calling convention, unwinder and `$pc`/`$sp`.
//! - `org.gnu.gdb.i386.sse`: xmm0-15, mxcsr.
//! - `org.gnu.gdb.i386.segments`: fs_base, gs_base (gdb knows these by name).
//! - `org.ttvm.i386.sys`: what a kernel developer needs beyond a process's view:
//!   k_gs_base (the MSR SWAPGS exchanges with gs_base), cr0, cr2, cr3, cr4, cr8, efer.
//!   Names follow QEMU's gdbstub so habits (`p/x $cr3`, `info registers efer`) carry over.

/// The XML served to gdb.
pub const TARGET_XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>i386:x86-64</architecture>
<feature name="org.gnu.gdb.i386.core">
<flags id="ttvm_eflags" size="4">
<field name="CF" start="0" end="0"/>
<field name="" start="1" end="1"/>
<field name="PF" start="2" end="2"/>
<field name="AF" start="4" end="4"/>
<field name="ZF" start="6" end="6"/>
<field name="SF" start="7" end="7"/>
<field name="TF" start="8" end="8"/>
<field name="IF" start="9" end="9"/>
<field name="DF" start="10" end="10"/>
<field name="OF" start="11" end="11"/>
<field name="IOPL" start="12" end="13"/>
<field name="NT" start="14" end="14"/>
<field name="RF" start="16" end="16"/>
<field name="VM" start="17" end="17"/>
<field name="AC" start="18" end="18"/>
<field name="VIF" start="19" end="19"/>
<field name="VIP" start="20" end="20"/>
<field name="ID" start="21" end="21"/>
</flags>
<reg name="rax" bitsize="64" type="int64"/>
<reg name="rbx" bitsize="64" type="int64"/>
<reg name="rcx" bitsize="64" type="int64"/>
<reg name="rdx" bitsize="64" type="int64"/>
<reg name="rsi" bitsize="64" type="int64"/>
<reg name="rdi" bitsize="64" type="int64"/>
<reg name="rbp" bitsize="64" type="data_ptr"/>
<reg name="rsp" bitsize="64" type="data_ptr"/>
<reg name="r8" bitsize="64" type="int64"/>
<reg name="r9" bitsize="64" type="int64"/>
<reg name="r10" bitsize="64" type="int64"/>
<reg name="r11" bitsize="64" type="int64"/>
<reg name="r12" bitsize="64" type="int64"/>
<reg name="r13" bitsize="64" type="int64"/>
<reg name="r14" bitsize="64" type="int64"/>
<reg name="r15" bitsize="64" type="int64"/>
<reg name="rip" bitsize="64" type="code_ptr"/>
<reg name="eflags" bitsize="32" type="ttvm_eflags"/>
<reg name="cs" bitsize="32" type="int32"/>
<reg name="ss" bitsize="32" type="int32"/>
<reg name="ds" bitsize="32" type="int32"/>
<reg name="es" bitsize="32" type="int32"/>
<reg name="fs" bitsize="32" type="int32"/>
<reg name="gs" bitsize="32" type="int32"/>
<reg name="st0" bitsize="80" type="i387_ext"/>
<reg name="st1" bitsize="80" type="i387_ext"/>
<reg name="st2" bitsize="80" type="i387_ext"/>
<reg name="st3" bitsize="80" type="i387_ext"/>
<reg name="st4" bitsize="80" type="i387_ext"/>
<reg name="st5" bitsize="80" type="i387_ext"/>
<reg name="st6" bitsize="80" type="i387_ext"/>
<reg name="st7" bitsize="80" type="i387_ext"/>
<reg name="fctrl" bitsize="32" type="int" group="float"/>
<reg name="fstat" bitsize="32" type="int" group="float"/>
<reg name="ftag" bitsize="32" type="int" group="float"/>
<reg name="fiseg" bitsize="32" type="int" group="float"/>
<reg name="fioff" bitsize="32" type="int" group="float"/>
<reg name="foseg" bitsize="32" type="int" group="float"/>
<reg name="fooff" bitsize="32" type="int" group="float"/>
<reg name="fop" bitsize="32" type="int" group="float"/>
</feature>
<feature name="org.gnu.gdb.i386.sse">
<vector id="ttvm_v4f" type="ieee_single" count="4"/>
<vector id="ttvm_v2d" type="ieee_double" count="2"/>
<vector id="ttvm_v16i8" type="int8" count="16"/>
<vector id="ttvm_v8i16" type="int16" count="8"/>
<vector id="ttvm_v4i32" type="int32" count="4"/>
<vector id="ttvm_v2i64" type="int64" count="2"/>
<union id="ttvm_vec128">
<field name="v4_float" type="ttvm_v4f"/>
<field name="v2_double" type="ttvm_v2d"/>
<field name="v16_int8" type="ttvm_v16i8"/>
<field name="v8_int16" type="ttvm_v8i16"/>
<field name="v4_int32" type="ttvm_v4i32"/>
<field name="v2_int64" type="ttvm_v2i64"/>
<field name="uint128" type="uint128"/>
</union>
<flags id="ttvm_mxcsr" size="4">
<field name="IE" start="0" end="0"/>
<field name="DE" start="1" end="1"/>
<field name="ZE" start="2" end="2"/>
<field name="OE" start="3" end="3"/>
<field name="UE" start="4" end="4"/>
<field name="PE" start="5" end="5"/>
<field name="DAZ" start="6" end="6"/>
<field name="IM" start="7" end="7"/>
<field name="DM" start="8" end="8"/>
<field name="ZM" start="9" end="9"/>
<field name="OM" start="10" end="10"/>
<field name="UM" start="11" end="11"/>
<field name="PM" start="12" end="12"/>
<field name="FZ" start="15" end="15"/>
</flags>
<reg name="xmm0" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm1" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm2" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm3" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm4" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm5" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm6" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm7" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm8" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm9" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm10" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm11" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm12" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm13" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm14" bitsize="128" type="ttvm_vec128"/>
<reg name="xmm15" bitsize="128" type="ttvm_vec128"/>
<reg name="mxcsr" bitsize="32" type="ttvm_mxcsr" group="vector"/>
</feature>
<feature name="org.gnu.gdb.i386.segments">
<reg name="fs_base" bitsize="64" type="int64"/>
<reg name="gs_base" bitsize="64" type="int64"/>
</feature>
<feature name="org.ttvm.i386.sys">
<flags id="ttvm_cr0" size="8">
<field name="PE" start="0" end="0"/>
<field name="MP" start="1" end="1"/>
<field name="EM" start="2" end="2"/>
<field name="TS" start="3" end="3"/>
<field name="ET" start="4" end="4"/>
<field name="NE" start="5" end="5"/>
<field name="WP" start="16" end="16"/>
<field name="AM" start="18" end="18"/>
<field name="NW" start="29" end="29"/>
<field name="CD" start="30" end="30"/>
<field name="PG" start="31" end="31"/>
</flags>
<flags id="ttvm_cr4" size="8">
<field name="VME" start="0" end="0"/>
<field name="PVI" start="1" end="1"/>
<field name="TSD" start="2" end="2"/>
<field name="DE" start="3" end="3"/>
<field name="PSE" start="4" end="4"/>
<field name="PAE" start="5" end="5"/>
<field name="MCE" start="6" end="6"/>
<field name="PGE" start="7" end="7"/>
<field name="PCE" start="8" end="8"/>
<field name="OSFXSR" start="9" end="9"/>
<field name="OSXMMEXCPT" start="10" end="10"/>
<field name="UMIP" start="11" end="11"/>
<field name="LA57" start="12" end="12"/>
<field name="VMXE" start="13" end="13"/>
<field name="SMXE" start="14" end="14"/>
<field name="FSGSBASE" start="16" end="16"/>
<field name="PCIDE" start="17" end="17"/>
<field name="OSXSAVE" start="18" end="18"/>
<field name="SMEP" start="20" end="20"/>
<field name="SMAP" start="21" end="21"/>
<field name="PKE" start="22" end="22"/>
</flags>
<flags id="ttvm_efer" size="8">
<field name="SCE" start="0" end="0"/>
<field name="LME" start="8" end="8"/>
<field name="LMA" start="10" end="10"/>
<field name="NXE" start="11" end="11"/>
<field name="SVME" start="12" end="12"/>
<field name="LMSLE" start="13" end="13"/>
<field name="FFXSR" start="14" end="14"/>
<field name="TCE" start="15" end="15"/>
</flags>
<reg name="k_gs_base" bitsize="64" type="int64"/>
<reg name="cr0" bitsize="64" type="ttvm_cr0"/>
<reg name="cr2" bitsize="64" type="int64"/>
<reg name="cr3" bitsize="64" type="int64"/>
<reg name="cr4" bitsize="64" type="ttvm_cr4"/>
<reg name="cr8" bitsize="64" type="int64"/>
<reg name="efer" bitsize="64" type="ttvm_efer"/>
</feature>
</target>
"#;

/// (name, size in bytes) of every register in `g`-packet order, read from [`TARGET_XML`].
pub fn register_layout() -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for piece in TARGET_XML.split("<reg ").skip(1) {
        let attr = |key: &str| -> Option<&str> {
            let start = piece.find(&format!("{key}=\""))? + key.len() + 2;
            let len = piece[start..].find('"')?;
            Some(&piece[start..start + len])
        };
        if let (Some(name), Some(bits)) = (attr("name"), attr("bitsize").and_then(|b| b.parse::<usize>().ok())) {
            out.push((name.to_string(), bits / 8));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_every_register_gdb_and_kernel_developers_need() {
        let names: Vec<String> = register_layout().into_iter().map(|(n, _)| n).collect();
        for want in [
            "rax",
            "r15",
            "rip",
            "eflags",
            "gs",
            "st7",
            "fop",
            "xmm15",
            "mxcsr",
            "fs_base",
            "gs_base",
            "k_gs_base",
            "cr0",
            "cr2",
            "cr3",
            "cr4",
            "cr8",
            "efer",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing");
        }
        assert_eq!(names.len(), 24 + 16 + 17 + 2 + 7);
    }

    #[test]
    fn xml_is_balanced() {
        for tag in ["feature", "flags", "union", "target"] {
            assert_eq!(
                TARGET_XML.matches(&format!("<{tag} ")).count() + TARGET_XML.matches(&format!("<{tag}>")).count(),
                TARGET_XML.matches(&format!("</{tag}>")).count(),
                "{tag}"
            );
        }
    }
}
