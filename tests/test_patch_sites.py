"""recorder/patch_sites.py: which `syscall` instructions may be overwritten by a jmp to a
buffering stub. Checked on the system libc (its read/write fast paths must be patchable) and on
a small shared object whose inline asm builds each shape a site must be refused for."""
from __future__ import annotations

import os
import shutil
import subprocess

import capstone
import pytest
from elftools.elf.elffile import ELFFile

from rrverify.recorder.patch_sites import PatchPlan, Refusal, plan_site, site_survey

SYSCALL = b"\x0f\x05"

SHAPES_C = r"""
#define CLOBBERS "rcx", "r11", "memory", "cc"
long plain(void) {
    long r;
    asm volatile("mov $39, %%eax\n\tsyscall\n\tcmp $-4095, %%rax\n\tnop" : "=a"(r) : : CLOBBERS);
    return r;
}
long rip_relative(void) {
    long r;
    asm volatile("mov $39, %%eax\n\tsyscall\n\tmov 0x10(%%rip), %%rax" : "=a"(r) : : CLOBBERS);
    return r;
}
long jump_after(void) {
    long r;
    asm volatile("mov $39, %%eax\n\tsyscall\n\tjmp 1f\n\tnop\n\tnop\n\tnop\n1:"
                 : "=a"(r) : : CLOBBERS);
    return r;
}
long branch_into(long x) {
    long r;
    asm volatile("mov $39, %%eax\n\ttest %1, %1\n\tjnz 1f\n\tsyscall\n1:\n\tcmp $-4095, %%rax"
                 : "=&a"(r) : "r"(x) : CLOBBERS);
    return r;
}
long branch_to_site(long x) {
    long r;
    asm volatile("mov $39, %%eax\n\ttest %1, %1\n\tjnz 1f\n\tnop\n1:\n\tsyscall\n\t"
                 "cmp $-4095, %%rax" : "=&a"(r) : "r"(x) : CLOBBERS);
    return r;
}
long mid_instruction(void) {
    long r;
    asm volatile("mov $0x050f, %%eax" : "=a"(r));
    return r;
}
long jump_table(void) {
    long r;
    asm volatile("lea 1f(%%rip), %%rcx\n\tjmp *%%rcx\n1:\n\tmov $39, %%eax\n\tsyscall\n\t"
                 "cmp $-4095, %%rax" : "=a"(r) : : CLOBBERS);
    return r;
}
long tail_call(long (*next)(void)) {
    asm volatile("mov $39, %%eax\n\tsyscall\n\tcmp $-4095, %%rax" : : : "rax", CLOBBERS);
    return next();
}
long pushes(void) {
    long r;
    asm volatile("mov $39, %%eax\n\tsyscall\n\tpush %%rax\n\tpop %%rax\n\tnop\n\tnop\n\tnop"
                 : "=a"(r) : : CLOBBERS);
    return r;
}
long short_instructions(void) {
    long r;
    asm volatile("mov $39, %%eax\n\tsyscall\n\txor %%edx, %%edx\n\tnop\n\tnop\n\tnop"
                 : "=a"(r) : : "rdx", CLOBBERS);
    return r;
}
/* Hand-written CFI: a `.cold` part in its own FDE that jumps back right after the syscall, and
   LSDAs (CIE augmentation "zPLR") whose landing pad is inside / outside the patch. */
asm(".text\n"
    ".globl cold_into\n.type cold_into, @function\n"
    "cold_into:\n.cfi_startproc\n"
    "  mov $39, %eax\n  test %rdi, %rdi\n  jnz .Lcold\n  syscall\n"
    ".Lback:\n  cmp $-4095, %rax\n  ret\n.cfi_endproc\n.size cold_into, .-cold_into\n"
    ".section .text.unlikely, \"ax\", @progbits\n"
    ".Lcold:\n.cfi_startproc\n  xor %eax, %eax\n  jmp .Lback\n.cfi_endproc\n"
    ".text\n"
    ".type personality, @function\npersonality:\n  ret\n"
    ".globl pad_inside\n.type pad_inside, @function\n"
    "pad_inside:\n.cfi_startproc\n.cfi_personality 0x1b, personality\n.cfi_lsda 0x1b, .Llsda1\n"
    "  mov $39, %eax\n  syscall\n.Lpad1:\n  cmp $-4095, %rax\n  ret\n"
    ".cfi_endproc\n.size pad_inside, .-pad_inside\n"
    ".globl pad_outside\n.type pad_outside, @function\n"
    "pad_outside:\n.cfi_startproc\n.cfi_personality 0x1b, personality\n.cfi_lsda 0x1b, .Llsda2\n"
    "  mov $39, %eax\n  syscall\n  cmp $-4095, %rax\n  ret\n.Lpad2:\n  ud2\n"
    ".cfi_endproc\n.size pad_outside, .-pad_outside\n"
    ".globl at_end\n.type at_end, @function\n"
    "at_end:\n.cfi_startproc\n  mov $60, %eax\n  syscall\n.cfi_endproc\n.size at_end, .-at_end\n"
    ".globl after_end\n.type after_end, @function\n"
    "after_end:\n.cfi_startproc\n  nop\n  nop\n  nop\n  nop\n  ret\n.cfi_endproc\n"
    ".section .gcc_except_table, \"a\", @progbits\n"
    /* lpstart omitted, no type table, uleb128 call sites: (start, length, pad, action) */
    ".Llsda1:\n  .byte 0xff, 0xff, 0x01\n  .uleb128 .Lcs1end-.Lcs1\n.Lcs1:\n"
    "  .uleb128 0, .Lpad1-pad_inside, .Lpad1-pad_inside, 0\n.Lcs1end:\n"
    ".Llsda2:\n  .byte 0xff, 0xff, 0x01\n  .uleb128 .Lcs2end-.Lcs2\n.Lcs2:\n"
    "  .uleb128 0, .Lpad2-pad_outside, .Lpad2-pad_outside, 0\n.Lcs2end:\n"
    ".text\n");
"""


def _find_libc() -> str:
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if os.path.basename(path).startswith("libc.so"):
                return path
    return "/lib/x86_64-linux-gnu/libc.so.6"


LIBC = _find_libc()


def syscall_offsets(path: str, name: str) -> list[int]:
    """File offsets of every 0f 05 pair in the body of the function symbol `name`."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for table in (".dynsym", ".symtab"):
            section = elf.get_section_by_name(table)
            for sym in (section and section.get_symbol_by_name(name)) or ():
                if sym["st_info"]["type"] == "STT_FUNC" and sym["st_size"]:
                    start = next(elf.address_offsets(sym["st_value"]))
                    f.seek(start)
                    body = f.read(sym["st_size"])
                    out, pos = [], body.find(SYSCALL)
                    while pos >= 0:
                        out.append(start + pos)
                        pos = body.find(SYSCALL, pos + 2)
                    return out
    raise LookupError(f"{name} not in {path}")


def file_bytes(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def assert_plan_matches_file(path: str, offset: int, plan: PatchPlan) -> None:
    """The plan's displaced bytes are the file's, and decode to its text as whole instructions."""
    assert plan.length == 2 + len(plan.displaced) >= 5
    assert file_bytes(path, offset, 2) == SYSCALL
    assert file_bytes(path, offset + 2, len(plan.displaced)) == plan.displaced
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    insns = list(md.disasm(plan.displaced, 0))
    assert sum(i.size for i in insns) == len(plan.displaced)
    assert plan.text == "; ".join(f"{i.mnemonic} {i.op_str}".rstrip() for i in insns)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("patch_sites")
    (out / "shapes.c").write_text(SHAPES_C)
    so = str(out / "shapes.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", so, str(out / "shapes.c")],
                   check=True)
    return so


def only_site(path: str, name: str) -> int:
    sites = syscall_offsets(path, name)
    assert len(sites) == 1, (name, sites)
    return sites[0]


# --- the system libc ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["read", "write"])
def test_libc_read_and_write_fast_paths_are_patchable(name):
    sites = syscall_offsets(LIBC, name)
    assert sites, f"no syscall in {name}"
    plan = plan_site(LIBC, sites[0])
    assert isinstance(plan, PatchPlan), plan
    assert plan.text.startswith("cmp rax, -0x1000"), plan
    assert plan.length >= 5
    assert_plan_matches_file(LIBC, sites[0], plan)


@pytest.mark.parametrize("names", [("close",), ("lseek", "lseek64"),
                                   ("fstatat", "fstatat64", "__fxstat64", "fstat", "fstat64")])
def test_libc_other_wrappers_have_a_patchable_site(names):
    plans = []
    for name in names:
        try:
            sites = syscall_offsets(LIBC, name)
        except LookupError:
            continue
        for offset in sites:
            plan = plan_site(LIBC, offset)
            assert isinstance(plan, (PatchPlan, Refusal))
            if isinstance(plan, PatchPlan):
                assert_plan_matches_file(LIBC, offset, plan)
                plans.append(plan)
    assert plans, f"no patchable syscall in any of {names}"
    assert all("cmp" in p.text for p in plans)


def test_a_second_call_is_answered_from_the_cache():
    offset = syscall_offsets(LIBC, "read")[0]
    first = plan_site(LIBC, offset)
    assert plan_site(LIBC, offset) is first


def test_libc_survey_counts_are_plausible():
    survey = site_survey(LIBC)
    assert survey["candidates"] >= survey["boundaries"] >= survey["patchable"] > 0
    assert survey["patchable"] + sum(survey["refusals"].values()) == survey["candidates"]
    # Every libc syscall wrapper's fast path has the read/write shape.
    assert survey["patchable"] > survey["boundaries"] // 2
    assert survey["refusals"].get("not-boundary", 0) == \
        survey["candidates"] - survey["boundaries"] - survey["refusals"].get("no-fde", 0) - \
        survey["refusals"].get("undecodable", 0) - survey["refusals"].get("cfi", 0)


# --- a copy of libc, edited -----------------------------------------------------------------

def test_a_jmp_after_the_syscall_in_a_libc_copy_is_refused(tmp_path):
    copy = str(tmp_path / "libc.so.6")
    shutil.copyfile(LIBC, copy)
    offset = syscall_offsets(copy, "read")[0]
    assert isinstance(plan_site(copy, offset), PatchPlan)
    with open(copy, "r+b") as f:
        f.seek(offset + 2)
        f.write(b"\xeb\x04\x90\x90\x90\x90")    # jmp +4; nop x4 (was cmp rax, -0x1000)
    # Same inode and size: the new mtime alone must invalidate the cached plan.
    st = os.stat(copy)
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    refusal = plan_site(copy, offset)
    assert isinstance(refusal, Refusal)
    assert "jmp" in refusal.reason and "transfers control" in refusal.reason


# --- a shared object built for each shape ---------------------------------------------------

@pytest.mark.parametrize("name,text,length", [
    ("plain", "cmp rax, -0xfff", 8),
    ("branch_to_site", "cmp rax, -0xfff", 8),  # a branch to the syscall itself lands on the jmp
    ("tail_call", "cmp rax, -0xfff", 8),       # jmp *%rdi then padding: a tail call
    ("pad_outside", "cmp rax, -0xfff", 8),     # its landing pad is after the ret
    ("short_instructions", "xor edx, edx; nop", 5),  # whole instructions up to 5 bytes
])
def test_well_shaped_sites_are_patchable(shapes, name, text, length):
    offset = only_site(shapes, name)
    plan = plan_site(shapes, offset)
    assert isinstance(plan, PatchPlan), plan
    assert plan.text == text and plan.length == length
    assert_plan_matches_file(shapes, offset, plan)


@pytest.mark.parametrize("name,words", [
    ("rip_relative", ["rip-relative", "rip + 0x10"]),
    ("jump_after", ["jmp", "transfers control"]),
    ("branch_into", ["targets inside the patch"]),
    ("cold_into", ["targets inside the patch"]),
    ("pad_inside", ["landing pad is inside the patch"]),
    ("jump_table", ["indirect jmp"]),
    ("pushes", ["push rax", "stack pointer"]),
    ("at_end", ["fewer than 5 bytes", "function end"]),   # the nops after it are another's
    ("mid_instruction", ["not an instruction boundary"]),
])
def test_badly_shaped_sites_are_refused(shapes, name, words):
    refusal = plan_site(shapes, only_site(shapes, name))
    assert isinstance(refusal, Refusal), refusal
    for word in words:
        assert word in refusal.reason, refusal.reason
    assert "\n" not in refusal.reason


def test_branch_into_names_the_branch_and_its_target(shapes):
    offset = only_site(shapes, "branch_into")
    refusal = plan_site(shapes, offset)
    with open(shapes, "rb") as f:
        elf = ELFFile(f)
        text = elf.get_section_by_name(".text")
        site = text["sh_addr"] + offset - text["sh_offset"]
    assert f"(0x{site + 2:x})" in refusal.reason


def test_shapes_survey(shapes):
    survey = site_survey(shapes)
    assert survey["candidates"] >= 14
    assert survey["patchable"] >= 5
    for rule in ("rip-relative", "control-transfer", "branch-into-patch", "indirect-jump",
                 "stack", "not-boundary", "past-function-end"):
        assert survey["refusals"].get(rule, 0) >= 1, (rule, survey)


# --- bad input ------------------------------------------------------------------------------

def test_missing_file_is_refused(tmp_path):
    path = str(tmp_path / "nothing.so")
    refusal = plan_site(path, 0x1000)
    assert isinstance(refusal, Refusal) and path in refusal.reason


def test_non_elf_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just text, and some more text " * 100)
    refusal = plan_site(str(path), 0x10)
    assert isinstance(refusal, Refusal)
    assert str(path) in refusal.reason and "not an ELF" in refusal.reason
    assert "error" in site_survey(str(path))


@pytest.mark.parametrize("size", [10, 200, 0x1000, 0x30000])
def test_truncated_libc_is_refused(tmp_path, size):
    path = str(tmp_path / "libc-truncated.so")
    with open(path, "wb") as f:
        f.write(file_bytes(LIBC, 0, size))
    offset = syscall_offsets(LIBC, "read")[0]
    for off in (offset, 0x20, size - 2):
        refusal = plan_site(path, off)
        assert isinstance(refusal, Refusal), (off, refusal)
        assert path in refusal.reason


def test_other_machine_is_refused(tmp_path, shapes):
    path = str(tmp_path / "arm.so")
    shutil.copyfile(shapes, path)
    with open(path, "r+b") as f:
        f.seek(18)                               # e_machine
        f.write((183).to_bytes(2, "little"))     # EM_AARCH64
    refusal = plan_site(path, only_site(shapes, "plain"))
    assert isinstance(refusal, Refusal) and path in refusal.reason
    assert "x86-64" in refusal.reason


@pytest.mark.parametrize("header,words", [
    (b"\x02\x1b\x03\x3b", ["version 2"]),
    (b"\x01\x1b\x03\x01", ["table encoding 0x01"]),      # uleb128: no binary search
    (b"\x01\x1b\x03\xff", ["no search table"]),
])
def test_unsupported_eh_frame_hdr_is_refused(tmp_path, header, words):
    path = str(tmp_path / "libc.so.6")
    shutil.copyfile(LIBC, path)
    with open(path, "r+b") as f:
        hdr = next(seg["p_offset"] for seg in ELFFile(f).iter_segments()
                   if seg["p_type"] == "PT_GNU_EH_FRAME")
        f.seek(hdr)
        f.write(header)
    refusal = plan_site(path, syscall_offsets(LIBC, "read")[0])
    assert isinstance(refusal, Refusal) and path in refusal.reason
    for word in words:
        assert word in refusal.reason, refusal.reason


def test_no_eh_frame_hdr_is_refused(tmp_path):
    (tmp_path / "f.c").write_text("long f(void) { long r; asm volatile(\"syscall\\n\\t"
                                  "cmp $-4095, %%rax\" : \"=a\"(r) : : \"rcx\", \"r11\"); "
                                  "return r; }\n")
    so = str(tmp_path / "f.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wl,--no-eh-frame-hdr", "-o", so,
                    str(tmp_path / "f.c")], check=True)
    refusal = plan_site(so, only_site(so, "f"))
    assert isinstance(refusal, Refusal) and so in refusal.reason
    assert ".eh_frame_hdr" in refusal.reason


@pytest.mark.parametrize("offset", [0, 0x40, -2, 1 << 40])
def test_offset_outside_executable_segments_is_refused(offset):
    refusal = plan_site(LIBC, offset)
    assert isinstance(refusal, Refusal)
    assert LIBC in refusal.reason and "executable PT_LOAD" in refusal.reason


def test_a_syscall_ret_wrapper_is_patched_with_its_padding():
    """glibc's getpid is `mov $39, %eax; syscall; ret`, then padding to the next function: the
    jump takes the `ret` and two bytes of that padding, and the stub ends in the `ret`."""
    from elftools.elf.elffile import ELFFile
    libc = LIBC
    with open(libc, "rb") as f:
        elf = ELFFile(f)
        sym = next(s for s in elf.get_section_by_name(".dynsym").iter_symbols()
                   if s.name == "getpid")
        f.seek(0)
        data = f.read()
    site = data.find(b"\x0f\x05", sym["st_value"], sym["st_value"] + sym["st_size"])
    if data[site + 2] != 0xc3:
        pytest.skip("this libc's getpid is not a `syscall; ret` wrapper")
    plan = plan_site(libc, site)
    assert isinstance(plan, PatchPlan), plan
    assert plan.length == 5 and plan.displaced[0] == 0xc3
    assert plan.displaced == data[site + 2:site + 5]
