//! Builds the replayer's XDP program and embeds it: see `ebpf_builder`.

fn main() {
    ebpf_builder::embed("replay-xdp");
}
