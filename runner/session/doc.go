// Package session is the host side of the runner↔init protocol for one run: it waits for
// the guest's Hello, sends the RunConfig, writes stdout and stderr to the caller's writers
// as the chunks arrive, collects the Exit, receives the output files (verified against size
// and sha256, written atomically as DIR/<base name>), and acknowledges Done so the guest may
// power off.
//
// It works over any net.Conn: a Unix socket bridged to vsock for a VM, or the sandbox's
// socketpair. Everything the guest sends is checked against the conversation's state and the
// requested outputs; a guest that deviates ends the session with a *ProtocolError.
package session
