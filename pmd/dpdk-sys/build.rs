//! Finds the system's DPDK with pkg-config, generates Rust bindings for the
//! headers in `wrapper.h` and compiles the C shim for DPDK's static-inline
//! fast-path functions with DPDK's own compiler flags.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");

    let dpdk = pkg_config::Config::new().atleast_version("22.11").probe("libdpdk").unwrap_or_else(|e| {
        panic!(
            "DPDK 22.11 or later was not found through pkg-config ({e}).\n\
                 On Debian 12 install it with: apt-get install libdpdk-dev pkg-config\n\
                 (or run ci/setup, which installs everything the build needs)"
        )
    });

    // pkg-config's cflags also carry `-include rte_config.h` and DPDK's -march;
    // pass them to both the shim and clang for bindgen so both see the same
    // structure layouts DPDK itself was built with.
    let raw_cflags = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let extra: Vec<String> = raw_cflags.split_whitespace().map(str::to_owned).collect();

    let mut shim = cc::Build::new();
    shim.file("shim.c").opt_level(3).warnings(true);
    for inc in &dpdk.include_paths {
        shim.include(inc);
    }
    for f in &extra {
        if f.starts_with("-march") || f == "-include" || f.ends_with("rte_config.h") {
            shim.flag(f);
        }
    }
    shim.compile("vs_dpdk_shim");
    // rte_vdev_init/uninit live in the vdev bus driver, which libdpdk.pc
    // does not list (drivers are loaded as plugins); link it by name.
    println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");

    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(extra.iter())
        .allowlist_function("rte_eal_.*")
        .allowlist_function("rte_eth_.*")
        .allowlist_function("rte_pktmbuf_.*")
        .allowlist_function("rte_mempool_(free|lookup|avail_count|in_use_count|create|lookup)")
        .allowlist_function("rte_mbuf_.*")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_ring_(create|free)")
        .allowlist_var("RING_F_.*")
        .allowlist_function("rte_lcore_.*")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_get_tsc_hz")
        .allowlist_function("rte_thread_(un)?register")
        .allowlist_function("rte_vdev_.*")
        .allowlist_function("rte_dev_.*")
        .allowlist_function("vs_.*")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_eth_.*")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RTE_MAX_LCORE")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
        .allowlist_var("RTE_ETH_LINK_.*")
        .allowlist_var("RTE_ETH_MQ_.*")
        .allowlist_var("RTE_ETH_XSTATS_.*")
        .allowlist_var("RTE_ETHER_.*")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("LCORE_ID_ANY")
        // Packed types rustc refuses (they contain aligned fields); nothing
        // here needs their insides.
        .opaque_type("rte_l2tpv2_.*")
        .opaque_type("rte_gtp_psc_.*")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(true)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for inc in &dpdk.include_paths {
        builder = builder.clang_arg(format!("-I{}", inc.display()));
    }
    let bindings =
        builder.generate().expect("bindgen failed on DPDK's headers (is libclang-dev installed? ci/setup installs it)");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings.write_to_file(out.join("bindings.rs")).expect("writing bindings.rs");
}
