package protocol

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Encoders: each appends its message's payload. Field order is the wire order.

func (m Hello) appendPayload(b []byte) []byte {
	b = appendU16(b, m.Version)
	return appendDur(b, m.InitStart)
}

func (m RunConfig) appendPayload(b []byte) []byte {
	b = appendStrings(b, m.Argv)
	b = appendStrings(b, m.Env)
	b = appendString(b, m.WorkDir)
	b = appendString(b, m.User)
	b = appendString(b, m.Hostname)
	b = appendStrings(b, m.Outputs)
	b = appendDur(b, m.Timeout)
	b = appendDur(b, m.KillGrace)
	b = appendI64(b, m.MaxFileSize)
	return appendBool(b, m.AllowPerf)
}

// Data's payload is the bytes themselves; the stream is the frame type.
func (m Data) appendPayload(b []byte) []byte { return append(b, m.Bytes...) }

func (m Exit) appendPayload(b []byte) []byte {
	b = appendU32(b, uint32(m.Code))
	b = appendU32(b, uint32(m.Signal))
	b = appendBool(b, m.TimedOut)
	b = appendBool(b, m.Cancelled)
	b = appendBool(b, m.OOMKilled)
	b = appendU8(b, uint8(m.Failure))
	b = appendString(b, truncate(m.Message, MaxText))
	b = appendDur(b, m.ConfigReceived)
	b = appendDur(b, m.Started)
	b = appendDur(b, m.Ended)
	return appendI64(b, m.InitMaxRSS)
}

func (m File) appendPayload(b []byte) []byte {
	b = appendString(b, m.Path)
	b = appendI64(b, m.Size)
	b = appendU32(b, m.Mode)
	return appendString(b, truncate(m.Err, MaxText))
}

func (m FileData) appendPayload(b []byte) []byte { return append(b, m.Bytes...) }

func (m FileEnd) appendPayload(b []byte) []byte {
	b = append(b, m.Sha256[:]...)
	return appendString(b, truncate(m.Err, MaxText))
}

func (Done) appendPayload(b []byte) []byte   { return b }
func (Ack) appendPayload(b []byte) []byte    { return b }
func (Cancel) appendPayload(b []byte) []byte { return b }

// truncate cuts s to at most n bytes so that an over-long error text cannot make an
// encoder produce a frame its peer must reject.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// decodePayload decodes the payload of a frame of type t. Data and FileData alias p.
func decodePayload(t Type, p []byte) (Message, error) {
	d := &decoder{buf: p}
	var m Message
	switch t {
	case TypeHello:
		m = Hello{Version: d.u16("version"), InitStart: d.dur("init start")}
	case TypeRunConfig:
		rc := RunConfig{
			Argv:     d.strs("argv", MaxArgs, MaxArgLen),
			Env:      d.strs("env", MaxEnv, MaxArgLen),
			WorkDir:  d.str("workdir", MaxPath),
			User:     d.str("user", MaxUser),
			Hostname: d.str("hostname", MaxHostname),
			Outputs:  d.strs("outputs", MaxOutputs, MaxPath),
		}
		rc.Timeout = d.dur("timeout")
		rc.KillGrace = d.dur("kill grace")
		rc.MaxFileSize = d.i64("max file size")
		rc.AllowPerf = d.boolean("allow perf")
		if d.err == nil && (rc.Timeout < 0 || rc.KillGrace < 0 || rc.MaxFileSize < 0) {
			d.fail("negative timeout, kill grace or max file size")
		}
		m = rc
	case TypeStdout:
		return Data{Stream: Stdout, Bytes: p}, nil
	case TypeStderr:
		return Data{Stream: Stderr, Bytes: p}, nil
	case TypeExit:
		e := Exit{
			Code:      int32(d.u32("code")),
			Signal:    int32(d.u32("signal")),
			TimedOut:  d.boolean("timed out"),
			Cancelled: d.boolean("cancelled"),
			OOMKilled: d.boolean("oom killed"),
			Failure:   FailureKind(d.u8("failure")),
			Message:   d.str("message", MaxText),
		}
		e.ConfigReceived = d.dur("config received")
		e.Started = d.dur("started")
		e.Ended = d.dur("ended")
		e.InitMaxRSS = d.i64("init max rss")
		if d.err == nil && e.Failure > FailureSetup {
			d.fail("unknown failure kind %d", e.Failure)
		}
		m = e
	case TypeFile:
		f := File{Path: d.str("path", MaxPath), Size: d.i64("size"), Mode: d.u32("mode"), Err: d.str("error", MaxText)}
		if d.err == nil && f.Size < 0 {
			d.fail("negative file size %d", f.Size)
		}
		m = f
	case TypeFileData:
		return FileData{Bytes: p}, nil
	case TypeFileEnd:
		var e FileEnd
		copy(e.Sha256[:], d.take(32, "sha256"))
		e.Err = d.str("error", MaxText)
		m = e
	case TypeDone:
		m = Done{}
	case TypeAck:
		m = Ack{}
	case TypeCancel:
		m = Cancel{}
	default:
		return nil, fmt.Errorf("%w: unknown message type %d", ErrMalformed, uint8(t))
	}
	if err := d.finish(t); err != nil {
		return nil, err
	}
	return m, nil
}

// Validate checks what the guest needs from a RunConfig beyond the wire limits. The host
// validates before sending; the guest validates again before running anything.
func (c *RunConfig) Validate() error {
	var errs []error
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		errs = append(errs, errors.New("empty command"))
	}
	if !path.IsAbs(c.WorkDir) {
		errs = append(errs, fmt.Errorf("working directory %q is not absolute", c.WorkDir))
	}
	for _, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			errs = append(errs, fmt.Errorf("env entry %q is not KEY=VALUE", kv))
		}
	}
	for _, o := range c.Outputs {
		if !path.IsAbs(o) {
			errs = append(errs, fmt.Errorf("output path %q is not absolute", o))
		}
	}
	if strings.ContainsRune(c.Hostname, '/') {
		errs = append(errs, fmt.Errorf("hostname %q contains '/'", c.Hostname))
	}
	if c.Timeout < 0 || c.KillGrace < 0 || c.MaxFileSize < 0 {
		errs = append(errs, errors.New("negative timeout, kill grace or max file size"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("protocol: run config: %w", err)
	}
	return nil
}
