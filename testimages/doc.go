// Package testimages builds the spec's scenario images (testing-plan.md: basic, env, workdir,
// output, exit, timeout, large, write, stderr, cpu, seccomp, caps, network) without Docker,
// from the host's statically linked busybox (Debian busybox-static), and writes them as an
// OCI image layout, as docker-archive tarballs or pushes them to a registry.
//
// Every image has the same base layer: /bin/busybox, one link per applet the scenarios use
// (symlinks, plus /bin/sh as a hard link and /usr/bin/env as an absolute symlink, so the
// image exercises all three), /etc/passwd and /etc/group with root, bench (1000) and nobody
// (65534), and the usual directories (/tmp 1777, /root 0700, /home/bench owned by 1000).
// Scenario images add their config (Cmd, Env, WorkingDir as in the spec's Dockerfiles);
// "workdir" also adds a second layer with a file in /app. Variants for the VM tier avoid
// shell pipelines, which crash busybox under this host's emulated KVM: cpu-nopipe,
// caps-nopipe and large-vm. All timestamps are fixed (Epoch), so digests are stable for a
// given busybox binary and Go release.
//
// The subpackage testregistry starts a real registry (Debian's docker-registry) on loopback.
package testimages
