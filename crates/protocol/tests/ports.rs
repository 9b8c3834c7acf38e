//! Listening ports handed to agents: free, and out of the kernel's reach for outgoing connections.

#[test]
fn a_listen_port_is_free_and_below_the_ephemeral_range() {
    let low: Option<u16> = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok());
    for _ in 0..20 {
        let port = hedge_protocol::free_listen_port().expect("a free port");
        if let Some(low) = low {
            assert!(port < low, "{port} is in the ephemeral range from {low}");
        }
        assert!(port >= 1024, "{port} needs privileges");
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("port {port} was handed out but cannot be bound: {e}"));
        assert_eq!(listener.local_addr().unwrap().port(), port);
    }
}
