//! The kernel's numbering of program types, attach types and map types
//! (`enum bpf_prog_type`, `enum bpf_attach_type`, `enum bpf_map_type` in
//! uapi `linux/bpf.h`). Newtypes over `u32` rather than Rust enums: objects
//! and callers may carry values newer than this table, and the C ABI passes
//! them through unchanged.

/// `enum bpf_prog_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProgType(pub u32);

impl ProgType {
    pub const UNSPEC: ProgType = ProgType(0);
    pub const SOCKET_FILTER: ProgType = ProgType(1);
    pub const KPROBE: ProgType = ProgType(2);
    pub const SCHED_CLS: ProgType = ProgType(3);
    pub const SCHED_ACT: ProgType = ProgType(4);
    pub const TRACEPOINT: ProgType = ProgType(5);
    pub const XDP: ProgType = ProgType(6);
    pub const PERF_EVENT: ProgType = ProgType(7);
    pub const CGROUP_SKB: ProgType = ProgType(8);
    pub const CGROUP_SOCK: ProgType = ProgType(9);
    pub const LWT_IN: ProgType = ProgType(10);
    pub const LWT_OUT: ProgType = ProgType(11);
    pub const LWT_XMIT: ProgType = ProgType(12);
    pub const SOCK_OPS: ProgType = ProgType(13);
    pub const SK_SKB: ProgType = ProgType(14);
    pub const CGROUP_DEVICE: ProgType = ProgType(15);
    pub const SK_MSG: ProgType = ProgType(16);
    pub const RAW_TRACEPOINT: ProgType = ProgType(17);
    pub const CGROUP_SOCK_ADDR: ProgType = ProgType(18);
    pub const LWT_SEG6LOCAL: ProgType = ProgType(19);
    pub const LIRC_MODE2: ProgType = ProgType(20);
    pub const SK_REUSEPORT: ProgType = ProgType(21);
    pub const FLOW_DISSECTOR: ProgType = ProgType(22);
    pub const CGROUP_SYSCTL: ProgType = ProgType(23);
    pub const RAW_TRACEPOINT_WRITABLE: ProgType = ProgType(24);
    pub const CGROUP_SOCKOPT: ProgType = ProgType(25);
    pub const TRACING: ProgType = ProgType(26);
    pub const STRUCT_OPS: ProgType = ProgType(27);
    pub const EXT: ProgType = ProgType(28);
    pub const LSM: ProgType = ProgType(29);
    pub const SK_LOOKUP: ProgType = ProgType(30);
    pub const SYSCALL: ProgType = ProgType(31);
    pub const NETFILTER: ProgType = ProgType(32);

    /// libbpf's name for the value (`libbpf_bpf_prog_type_str`), `None` if unknown.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "unspec",
            1 => "socket_filter",
            2 => "kprobe",
            3 => "sched_cls",
            4 => "sched_act",
            5 => "tracepoint",
            6 => "xdp",
            7 => "perf_event",
            8 => "cgroup_skb",
            9 => "cgroup_sock",
            10 => "lwt_in",
            11 => "lwt_out",
            12 => "lwt_xmit",
            13 => "sock_ops",
            14 => "sk_skb",
            15 => "cgroup_device",
            16 => "sk_msg",
            17 => "raw_tracepoint",
            18 => "cgroup_sock_addr",
            19 => "lwt_seg6local",
            20 => "lirc_mode2",
            21 => "sk_reuseport",
            22 => "flow_dissector",
            23 => "cgroup_sysctl",
            24 => "raw_tracepoint_writable",
            25 => "cgroup_sockopt",
            26 => "tracing",
            27 => "struct_ops",
            28 => "ext",
            29 => "lsm",
            30 => "sk_lookup",
            31 => "syscall",
            32 => "netfilter",
            _ => return None,
        })
    }
}

/// `enum bpf_attach_type`. `AttachType(0)` is also what libbpf stores for "no expected attach type".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachType(pub u32);

impl AttachType {
    /// 0: what libbpf stores when a section implies no expected attach type
    /// (numerically `BPF_CGROUP_INET_INGRESS`, as in libbpf).
    pub const NONE: AttachType = AttachType(0);
    pub const CGROUP_INET_INGRESS: AttachType = AttachType(0);
    pub const CGROUP_INET_EGRESS: AttachType = AttachType(1);
    pub const CGROUP_INET_SOCK_CREATE: AttachType = AttachType(2);
    pub const CGROUP_SOCK_OPS: AttachType = AttachType(3);
    pub const SK_SKB_STREAM_PARSER: AttachType = AttachType(4);
    pub const SK_SKB_STREAM_VERDICT: AttachType = AttachType(5);
    pub const CGROUP_DEVICE: AttachType = AttachType(6);
    pub const SK_MSG_VERDICT: AttachType = AttachType(7);
    pub const CGROUP_INET4_BIND: AttachType = AttachType(8);
    pub const CGROUP_INET6_BIND: AttachType = AttachType(9);
    pub const CGROUP_INET4_CONNECT: AttachType = AttachType(10);
    pub const CGROUP_INET6_CONNECT: AttachType = AttachType(11);
    pub const CGROUP_INET4_POST_BIND: AttachType = AttachType(12);
    pub const CGROUP_INET6_POST_BIND: AttachType = AttachType(13);
    pub const CGROUP_UDP4_SENDMSG: AttachType = AttachType(14);
    pub const CGROUP_UDP6_SENDMSG: AttachType = AttachType(15);
    pub const LIRC_MODE2: AttachType = AttachType(16);
    pub const FLOW_DISSECTOR: AttachType = AttachType(17);
    pub const CGROUP_SYSCTL: AttachType = AttachType(18);
    pub const CGROUP_UDP4_RECVMSG: AttachType = AttachType(19);
    pub const CGROUP_UDP6_RECVMSG: AttachType = AttachType(20);
    pub const CGROUP_GETSOCKOPT: AttachType = AttachType(21);
    pub const CGROUP_SETSOCKOPT: AttachType = AttachType(22);
    pub const TRACE_RAW_TP: AttachType = AttachType(23);
    pub const TRACE_FENTRY: AttachType = AttachType(24);
    pub const TRACE_FEXIT: AttachType = AttachType(25);
    pub const MODIFY_RETURN: AttachType = AttachType(26);
    pub const LSM_MAC: AttachType = AttachType(27);
    pub const TRACE_ITER: AttachType = AttachType(28);
    pub const CGROUP_INET4_GETPEERNAME: AttachType = AttachType(29);
    pub const CGROUP_INET6_GETPEERNAME: AttachType = AttachType(30);
    pub const CGROUP_INET4_GETSOCKNAME: AttachType = AttachType(31);
    pub const CGROUP_INET6_GETSOCKNAME: AttachType = AttachType(32);
    pub const XDP_DEVMAP: AttachType = AttachType(33);
    pub const CGROUP_INET_SOCK_RELEASE: AttachType = AttachType(34);
    pub const XDP_CPUMAP: AttachType = AttachType(35);
    pub const SK_LOOKUP: AttachType = AttachType(36);
    pub const XDP: AttachType = AttachType(37);
    pub const SK_SKB_VERDICT: AttachType = AttachType(38);
    pub const SK_REUSEPORT_SELECT: AttachType = AttachType(39);
    pub const SK_REUSEPORT_SELECT_OR_MIGRATE: AttachType = AttachType(40);
    pub const PERF_EVENT: AttachType = AttachType(41);
    pub const TRACE_KPROBE_MULTI: AttachType = AttachType(42);
    pub const LSM_CGROUP: AttachType = AttachType(43);
    pub const STRUCT_OPS: AttachType = AttachType(44);
    pub const NETFILTER: AttachType = AttachType(45);
    pub const TCX_INGRESS: AttachType = AttachType(46);
    pub const TCX_EGRESS: AttachType = AttachType(47);
    pub const TRACE_UPROBE_MULTI: AttachType = AttachType(48);
    pub const CGROUP_UNIX_CONNECT: AttachType = AttachType(49);
    pub const CGROUP_UNIX_SENDMSG: AttachType = AttachType(50);
    pub const CGROUP_UNIX_RECVMSG: AttachType = AttachType(51);
    pub const CGROUP_UNIX_GETPEERNAME: AttachType = AttachType(52);
    pub const CGROUP_UNIX_GETSOCKNAME: AttachType = AttachType(53);
    pub const NETKIT_PRIMARY: AttachType = AttachType(54);
    pub const NETKIT_PEER: AttachType = AttachType(55);
    pub const TRACE_KPROBE_SESSION: AttachType = AttachType(56);
    pub const TRACE_UPROBE_SESSION: AttachType = AttachType(57);
    pub const TRACE_FSESSION: AttachType = AttachType(58);
    pub const TRACE_FENTRY_MULTI: AttachType = AttachType(59);
    pub const TRACE_FEXIT_MULTI: AttachType = AttachType(60);
    pub const TRACE_FSESSION_MULTI: AttachType = AttachType(61);

    /// libbpf's name for the value (`libbpf_bpf_attach_type_str`), `None` if unknown.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "cgroup_inet_ingress",
            1 => "cgroup_inet_egress",
            2 => "cgroup_inet_sock_create",
            3 => "cgroup_sock_ops",
            4 => "sk_skb_stream_parser",
            5 => "sk_skb_stream_verdict",
            6 => "cgroup_device",
            7 => "sk_msg_verdict",
            8 => "cgroup_inet4_bind",
            9 => "cgroup_inet6_bind",
            10 => "cgroup_inet4_connect",
            11 => "cgroup_inet6_connect",
            12 => "cgroup_inet4_post_bind",
            13 => "cgroup_inet6_post_bind",
            14 => "cgroup_udp4_sendmsg",
            15 => "cgroup_udp6_sendmsg",
            16 => "lirc_mode2",
            17 => "flow_dissector",
            18 => "cgroup_sysctl",
            19 => "cgroup_udp4_recvmsg",
            20 => "cgroup_udp6_recvmsg",
            21 => "cgroup_getsockopt",
            22 => "cgroup_setsockopt",
            23 => "trace_raw_tp",
            24 => "trace_fentry",
            25 => "trace_fexit",
            26 => "modify_return",
            27 => "lsm_mac",
            28 => "trace_iter",
            29 => "cgroup_inet4_getpeername",
            30 => "cgroup_inet6_getpeername",
            31 => "cgroup_inet4_getsockname",
            32 => "cgroup_inet6_getsockname",
            33 => "xdp_devmap",
            34 => "cgroup_inet_sock_release",
            35 => "xdp_cpumap",
            36 => "sk_lookup",
            37 => "xdp",
            38 => "sk_skb_verdict",
            39 => "sk_reuseport_select",
            40 => "sk_reuseport_select_or_migrate",
            41 => "perf_event",
            42 => "trace_kprobe_multi",
            43 => "lsm_cgroup",
            44 => "struct_ops",
            45 => "netfilter",
            46 => "tcx_ingress",
            47 => "tcx_egress",
            48 => "trace_uprobe_multi",
            49 => "cgroup_unix_connect",
            50 => "cgroup_unix_sendmsg",
            51 => "cgroup_unix_recvmsg",
            52 => "cgroup_unix_getpeername",
            53 => "cgroup_unix_getsockname",
            54 => "netkit_primary",
            55 => "netkit_peer",
            56 => "trace_kprobe_session",
            57 => "trace_uprobe_session",
            58 => "trace_fsession",
            59 => "trace_fentry_multi",
            60 => "trace_fexit_multi",
            61 => "trace_fsession_multi",
            _ => return None,
        })
    }
}

/// `enum bpf_map_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapType(pub u32);

impl MapType {
    pub const UNSPEC: MapType = MapType(0);
    pub const HASH: MapType = MapType(1);
    pub const ARRAY: MapType = MapType(2);
    pub const PROG_ARRAY: MapType = MapType(3);
    pub const PERF_EVENT_ARRAY: MapType = MapType(4);
    pub const PERCPU_HASH: MapType = MapType(5);
    pub const PERCPU_ARRAY: MapType = MapType(6);
    pub const STACK_TRACE: MapType = MapType(7);
    pub const CGROUP_ARRAY: MapType = MapType(8);
    pub const LRU_HASH: MapType = MapType(9);
    pub const LRU_PERCPU_HASH: MapType = MapType(10);
    pub const LPM_TRIE: MapType = MapType(11);
    pub const ARRAY_OF_MAPS: MapType = MapType(12);
    pub const HASH_OF_MAPS: MapType = MapType(13);
    pub const DEVMAP: MapType = MapType(14);
    pub const SOCKMAP: MapType = MapType(15);
    pub const CPUMAP: MapType = MapType(16);
    pub const XSKMAP: MapType = MapType(17);
    pub const SOCKHASH: MapType = MapType(18);
    pub const CGROUP_STORAGE_DEPRECATED: MapType = MapType(19);
    pub const CGROUP_STORAGE: MapType = MapType(19);
    pub const REUSEPORT_SOCKARRAY: MapType = MapType(20);
    pub const PERCPU_CGROUP_STORAGE_DEPRECATED: MapType = MapType(21);
    pub const PERCPU_CGROUP_STORAGE: MapType = MapType(21);
    pub const QUEUE: MapType = MapType(22);
    pub const STACK: MapType = MapType(23);
    pub const SK_STORAGE: MapType = MapType(24);
    pub const DEVMAP_HASH: MapType = MapType(25);
    pub const STRUCT_OPS: MapType = MapType(26);
    pub const RINGBUF: MapType = MapType(27);
    pub const INODE_STORAGE: MapType = MapType(28);
    pub const TASK_STORAGE: MapType = MapType(29);
    pub const BLOOM_FILTER: MapType = MapType(30);
    pub const USER_RINGBUF: MapType = MapType(31);
    pub const CGRP_STORAGE: MapType = MapType(32);
    pub const ARENA: MapType = MapType(33);
    pub const INSN_ARRAY: MapType = MapType(34);
    pub const RHASH: MapType = MapType(35);

    /// libbpf's name for the value (`libbpf_bpf_map_type_str`), `None` if unknown.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "unspec",
            1 => "hash",
            2 => "array",
            3 => "prog_array",
            4 => "perf_event_array",
            5 => "percpu_hash",
            6 => "percpu_array",
            7 => "stack_trace",
            8 => "cgroup_array",
            9 => "lru_hash",
            10 => "lru_percpu_hash",
            11 => "lpm_trie",
            12 => "array_of_maps",
            13 => "hash_of_maps",
            14 => "devmap",
            15 => "sockmap",
            16 => "cpumap",
            17 => "xskmap",
            18 => "sockhash",
            19 => "cgroup_storage",
            20 => "reuseport_sockarray",
            21 => "percpu_cgroup_storage",
            22 => "queue",
            23 => "stack",
            24 => "sk_storage",
            25 => "devmap_hash",
            26 => "struct_ops",
            27 => "ringbuf",
            28 => "inode_storage",
            29 => "task_storage",
            30 => "bloom_filter",
            31 => "user_ringbuf",
            32 => "cgrp_storage",
            33 => "arena",
            34 => "insn_array",
            35 => "rhash",
            _ => return None,
        })
    }
}
