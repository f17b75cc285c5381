package shield

// The object is built for little-endian BPF only: aegis supports x86-64 and
// arm64. Both multiarch include directories are listed so the asm/ headers
// resolve on either build host.
//go:generate go tool bpf2go -tags linux -target bpfel -type shield_config -type entry -type lpm_v4_key -type lpm_v6_key -type addr6 -type source_state -type source_bucket -type counter -type autoblock_event -type verdict_reason -type rate_class -type presence_flag -type clock_sync -type plens4 -type plens6 -type exact4_bucket -type exact6_bucket -type exact_slot -type prefix_bucket shield bpf/shield.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu

// The object's SHA-256 is recorded when it is generated; the loader refuses
// an embedded object that does not match it (see ObjectDigest).
//go:generate sh -c "sha256sum shield_bpfel.o | cut -d' ' -f1 > shield_bpfel.o.sha256"

// A copy of the program with an out-of-bounds packet read: the kernel
// verifier's refusal is tested with it.
//go:generate clang -target bpf -O2 -g -fdebug-compilation-dir=. -Wall -Werror -DAEGIS_TEST_OOB_READ -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -c bpf/shield.c -o testdata/shield_oob.o
