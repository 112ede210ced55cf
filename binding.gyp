# The install-time build (node-gyp). This is the one list of addon sources:
# CMakeLists.txt (developer/sanitizer build) reads it from here.
{
  "targets": [
    {
      "target_name": "nsbox",
      "sources": [
        "addon/src/module.cc",
        "addon/src/errors.cc",
        "addon/src/plan.cc",
        "addon/src/child.cc",
        "addon/src/spawn.cc",
        "addon/src/helpers.cc",
        "addon/src/spawner.cc",
        "addon/src/exit_watch.cc",
        "addon/src/ns.cc",
        "addon/src/caps.cc",
        "addon/src/cgroup.cc",
        "addon/src/netlink_socket.cc",
        "addon/src/netlink_bindings.cc",
        "addon/src/net_handoff.cc",
        "addon/src/nft.cc",
        "addon/src/seccomp.cc",
        "addon/src/fs.cc",
        "addon/src/fdpass.cc",
        "addon/src/lifecycle.cc",
        "addon/src/relay.cc",
        "addon/src/init_blob.cc"
      ],
      "dependencies": ["nsbox-init"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NSBOX_INIT_PATH=\"nsbox-init\"", "NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fexceptions"],
      "cflags_cc!": ["-fexceptions", "-std=gnu++17"],
      "cflags": ["-Wa,-I<(PRODUCT_DIR)"],
      "cflags_cc": ["-std=c++20", "-fno-exceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "ldflags": ["-ldl"]
    },
    {
      # pid 1 of a sandbox (addon/init/init.cc): static, no libc; embedded in the addon by
      # addon/src/init_blob.cc (.incbin), never installed as a file
      "target_name": "nsbox-init",
      "type": "executable",
      "sources": ["addon/init/init.cc"],
      "cflags!": ["-fPIC", "-pthread", "-fexceptions"],
      "cflags_cc!": ["-fPIC", "-pthread", "-fexceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-O2", "-fno-exceptions", "-fno-rtti", "-fno-asynchronous-unwind-tables", "-fno-stack-protector", "-ffreestanding", "-fno-pie", "-Wall", "-Wextra"],
      "ldflags!": ["-pthread", "-rdynamic"],
      "ldflags": ["-static", "-nostdlib", "-nostartfiles", "-no-pie", "-Wl,--build-id=none", "-s"],
      "libraries!": ["-lpthread"]
    },
    {
      # nsbox-runc's native front end (addon/runc/front.cc): state, kill, start, delete and
      # --version without Node; static, so the prebuilt copy (prebuilds/) runs on any libc
      "target_name": "nsbox-runc",
      "type": "executable",
      "sources": ["addon/runc/front.cc"],
      "cflags!": ["-fexceptions"],
      "cflags_cc!": ["-fexceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-O2", "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra"],
      "ldflags!": ["-rdynamic"],
      "ldflags": ["-s", "-static"]
    }
  ]
}
