// Package oci resolves an image reference to a single-platform OCI image and its config.
//
// References it understands (see Resolve):
//
//	oci:DIR[:TAG|@DIGEST]        an OCI image-layout directory (a bare path holding oci-layout works too)
//	oci-archive:FILE[:TAG]       a tar of an OCI image layout
//	docker-archive:FILE[:TAG]    a `docker save` tarball (a bare *.tar path is sniffed as one or the other)
//	[HOST[:PORT]/]REPO[:TAG][@sha256:HEX]   a registry reference (default registry docker.io)
//
// Everything that speaks the registry protocol, reads layouts or docker-save tarballs is
// github.com/google/go-containerregistry; this package adds reference parsing, platform
// selection from an image index (with an error that lists what exists), a content-addressed
// blob cache shared by registry pulls and imported archives (a second resolve of the same
// image downloads no blob and, for a digest reference, makes no request at all), pull
// progress on a terminal, and the image config with Docker's override semantics
// (Config.Apply).
//
// Errors callers branch on are ErrNotFound, ErrPlatform and ErrAuth (errors.Is).
package oci
