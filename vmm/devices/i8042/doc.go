// Package i8042 emulates just enough of the PC keyboard controller for a guest to reset the
// machine: Linux's reboot=k writes command 0xfe ("pulse output line 0", the CPU reset line)
// to port 0x64, after polling the status register until the input buffer is empty. There
// is no keyboard or mouse behind it.
//
// Ports: data 0x60, status/command 0x64 (one bus range of Size ports from 0x60; 0x61 is the
// in-kernel PIT's speaker port and never reaches user space).
package i8042
