// Package protocol is the wire format between the runner (host) and bencher-init (guest PID 1).
//
// It is imported by both ends and works over any reliable byte stream (a net.Conn): AF_VSOCK
// in a VM, an inherited Unix socket in the sandbox backend.
//
// # Framing
//
// Every message is one frame: a 5-byte header, then the payload.
//
//	+---------+-------------------+----------------------+
//	| type u8 | length u32 (LE)   | payload (length B)   |
//	+---------+-------------------+----------------------+
//
// Each message type has its own payload limit (MaxPayload); a frame that exceeds it, an
// unknown type, or a payload that does not decode exactly is a protocol error and ends the
// session. Payload fields are little-endian fixed-size integers, and strings/byte slices
// prefixed by a u32 length; every string and every list has a limit (see limits.go), and a
// decoder never allocates more than the frame it was handed.
//
// # Conversation
//
//	guest                                  host
//	  | -- Hello{Version, timings} ---------> |   host checks Version (VersionError)
//	  | <---------------------- RunConfig --- |
//	  | -- Stdout / Stderr chunks (live) ---> |   interleaved, ordered per stream
//	  | <------------------ Cancel (opt.) --- |   host gave up: kill the workload now
//	  | -- Exit{code|signal, timed out, ...}  |
//	  | -- File{path,size,mode | error} ----> |   one per requested output, in request order
//	  | -- FileData ... FileEnd{sha256} ----> |   (only when File has no error)
//	  | -- Done ----------------------------> |
//	  | <---------------------------- Ack --- |   guest may now power off: nothing is lost
//
// The guest never sends anything but protocol messages on the connection.
package protocol
