from bushu.optimize.hardware import probe

CPUINFO = """processor\t: 0
model name\t: Test CPU
flags\t\t: fpu sse avx2 {extra}
"""


def test_int8_and_bf16_need_their_instructions(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text(CPUINFO.format(extra="avx512f"))
    vnni = tmp_path / "vnni"
    vnni.write_text(CPUINFO.format(extra="avx512f avx512_vnni amx_bf16"))
    old, new = probe(plain), probe(vnni)
    assert old.cpu == "Test CPU" and not old.int8_fast and not old.bf16_fast
    assert new.int8_fast and new.bf16_fast
    assert new.summary()["flags"] == ["amx_bf16", "avx2", "avx512_vnni", "avx512f"]


def test_a_missing_cpuinfo_means_no_flags(tmp_path):
    machine = probe(tmp_path / "absent")
    assert machine.flags == frozenset() and not machine.int8_fast and machine.cores >= 1
