// Package vsock is a userspace virtio-vsock device (virtio 1.2 §5.10) whose host side is
// Unix sockets, exposed exactly like Firecracker's hybrid vsock (docs/vsock.md):
//
//   - the guest has CID 3 (Config.GuestCID), the host CID 2;
//   - a guest connect(2, P) reaches a host listener on the Unix socket <uds>_P;
//   - a host client connects to <uds>, writes "CONNECT <P>\n" and reads "OK <host port>\n",
//     after which it talks to the guest's listener on port P.
//
// Only stream sockets are supported, with credit-based flow control in both directions:
// the guest never gets more than it advertised room for, and the device buffers at most a
// fixed amount per connection however slowly a host peer reads; one busy connection never
// starves the others of RX buffers.
//
// Files, one concept each: packet.go (header and TX packet parser), conn.go (connection
// state machine and credit), muxer.go (connection table, TX dispatch, host events),
// rx.go (RX packet building and scheduling), unix.go (listener, CONNECT handshake, dial),
// stream.go (per-connection socket I/O goroutines), device.go (virtio.Device and the
// device loop). Each starts with a comment giving its rules, limits and goroutine
// ownership.
package vsock
