//! Builds the XDP program and embeds it: see `ebpf_builder`.

fn main() {
    ebpf_builder::embed("sensor-xdp");
}
