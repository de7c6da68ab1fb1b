package main

import (
	"archive/tar"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ImageFile is the image to check, if any (hack/build-image.sh passes the one
// it wrote); otherwise the test builds one from a stand-in binary.
var imageFile = os.Getenv("IMAGE_FILE")

func testImage(t *testing.T) (v1.Image, string) {
	t.Helper()
	if imageFile != "" {
		img, err := tarball.ImageFromPath(imageFile, nil)
		if err != nil {
			t.Fatal(err)
		}
		return img, imageFile
	}
	return buildOwn(t)
}

// buildOwn builds an image of a stand-in binary.
func buildOwn(t *testing.T) (v1.Image, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "terminal-apiserver")
	if err := os.WriteFile(bin, []byte("\x7fELF stand-in"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	if err := run(Spec{Binary: bin, Tag: "ghcr.io/meshery/terminal-apiserver:v0.0.0-test", Version: "v0.0.0-test", Arch: "amd64",
		Revision: "0123abcd", Source: "https://github.com/meshery/terminal-apiserver"}, "2026-11-29T20:00:00Z", out); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img, out
}

// The image, read back as a runtime reads it: the binary as entrypoint, the
// non-root user, two layers (base files, binary), CA certificates, no
// shell, OCI labels.
func TestImageAsARuntimeSeesIt(t *testing.T) {
	img, _ := testImage(t)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/terminal-apiserver"}) || len(cfg.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q, cmd %q", cfg.Config.Entrypoint, cfg.Config.Cmd)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cfg.Config.User)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}
	for _, l := range []string{"org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.source", "org.opencontainers.image.created"} {
		if cfg.Config.Labels[l] == "" {
			t.Errorf("label %s missing: %v", l, cfg.Config.Labels)
		}
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 || len(cfg.RootFS.DiffIDs) != 2 {
		t.Fatalf("%d layers, %d diff IDs; want 2 (base files, binary)", len(layers), len(cfg.RootFS.DiffIDs))
	}
	files := map[string]*tar.Header{}
	var certs []byte
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			files["/"+strings.TrimSuffix(h.Name, "/")] = h
			if h.Name == "etc/ssl/certs/ca-certificates.crt" {
				if certs, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
			}
		}
		rc.Close()
	}
	bin := files["/terminal-apiserver"]
	if bin == nil || bin.Mode&0o111 == 0 || bin.Uid != 0 {
		t.Errorf("/terminal-apiserver: %+v, want an executable owned by root (not writable by the user it runs as)", bin)
	}
	if files["/etc/ssl/certs/ca-certificates.crt"] == nil || files["/etc/passwd"] == nil || files["/etc/nsswitch.conf"] == nil {
		t.Errorf("no CA certificates or /etc/passwd: %v", keys(files))
	}
	// The roots parse, and are a trust store's worth (Mozilla's has ~150).
	n := 0
	for rest := certs; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			t.Fatalf("a CA certificate does not parse: %v", err)
		}
		n++
	}
	if n < 100 {
		t.Errorf("%d CA certificates in the image, want a trust store's", n)
	}
	for _, shell := range []string{"/bin/sh", "/bin/bash", "/bin/busybox", "/usr/bin/env"} {
		if files[shell] != nil {
			t.Errorf("the image has %s", shell)
		}
	}
	if home := files["/home/nonroot"]; home == nil || home.Uid != 65532 {
		t.Errorf("/home/nonroot %+v, want it owned by 65532", home)
	}
}

// The same inputs make the same image, digest and all.
func TestImageIsReproducible(t *testing.T) {
	a, _ := buildOwn(t)
	b, _ := buildOwn(t)
	da, err := a.Digest()
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if da != db {
		t.Errorf("two builds: %s and %s", da, db)
	}
}

// The tarball names the tag, so that `ctr images import` and `docker load`
// give the image its name.
func TestTarballCarriesTheTag(t *testing.T) {
	_, path := testImage(t)
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].RepoTags) != 1 {
		t.Fatalf("manifest %+v", m)
	}
	want := os.Getenv("IMAGE_REF") // what hack/build-image.sh named it
	if want == "" {
		want = "ghcr.io/meshery/terminal-apiserver:v0.0.0-test"
	}
	if _, err := name.NewTag(m[0].RepoTags[0]); err != nil || m[0].RepoTags[0] != want {
		t.Errorf("tag %q (%v), want %q", m[0].RepoTags[0], err, want)
	}
}

func keys(m map[string]*tar.Header) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}

// The Dockerfile, for those who build with Docker, makes the same image:
// the binary at the same path as entrypoint, the same user and port, on a
// base with CA certificates, user 65532 and no shell (distroless/static's
// nonroot).
func TestDockerfileMatches(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var final []string // the last stage's instructions
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "FROM ") {
			final = nil
		}
		if l != "" && !strings.HasPrefix(l, "#") {
			final = append(final, l)
		}
	}
	want := []string{
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"COPY --from=build /out/terminal-apiserver " + entrypoint,
		"USER 65532:65532",
		"EXPOSE 8443",
		`ENTRYPOINT ["` + entrypoint + `"]`,
	}
	if !slices.Equal(final, want) {
		t.Errorf("the Dockerfile's final stage:\n%s\nwant:\n%s", strings.Join(final, "\n"), strings.Join(want, "\n"))
	}
}
