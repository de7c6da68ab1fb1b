// Command ociimage writes terminal-apiserver's container image as a tarball
// that `ctr images import` and `docker load` take, with Go alone: no Docker
// engine, no base image to pull. The image is the static binary, Mozilla's CA
// certificates (pinned in go.sum), and /etc/passwd naming the non-root user
// 65532; no shell.
// Every file has the commit's time and root or 65532 as owner, so the same
// inputs make the same image, digest and all (hack/build-image.sh).
//
// It uses go-containerregistry, the library ko and crane are made of, for
// the image format: what it writes is exactly what a registry or runtime
// reads, and the test reads it back with the same library.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// Spec is what goes into the image.
type Spec struct {
	Binary   string // the static binary, installed as /terminal-apiserver
	CACerts  string // a PEM bundle for /etc/ssl/certs/ca-certificates.crt; "": Mozilla's, pinned in go.sum
	Tag      string // e.g. ghcr.io/meshery/terminal-apiserver:v0.1.0
	Version  string
	Revision string
	Source   string
	Arch     string // GOARCH of the binary
	Created  time.Time
}

const (
	entrypoint = "/terminal-apiserver"
	certsPath  = "/etc/ssl/certs/ca-certificates.crt"
	nonRoot    = 65532
)

func main() {
	var s Spec
	var out, created string
	flag.StringVar(&s.Binary, "binary", "", "static terminal-apiserver binary (linux)")
	flag.StringVar(&s.CACerts, "ca-certs", "", "CA certificates bundle (PEM); empty: Mozilla's roots from golang.org/x/crypto/x509roots/fallback, the version go.sum pins")
	flag.StringVar(&s.Tag, "tag", "", "image reference, e.g. ghcr.io/meshery/terminal-apiserver:v0.1.0")
	flag.StringVar(&s.Version, "version", "", "version label")
	flag.StringVar(&s.Revision, "revision", "", "commit label")
	flag.StringVar(&s.Arch, "arch", "amd64", "the binary's GOARCH (the image's architecture)")
	flag.StringVar(&s.Source, "source", "https://github.com/meshery/terminal-apiserver", "source label")
	flag.StringVar(&created, "created", "", "creation time (RFC 3339; the commit's, for a reproducible image)")
	flag.StringVar(&out, "out", "", "tarball to write")
	flag.Parse()
	if err := run(s, created, out); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(s Spec, created, out string) error {
	if s.Binary == "" || s.Tag == "" || out == "" || created == "" {
		return fmt.Errorf("-binary, -tag, -created and -out are required")
	}
	t, err := time.Parse(time.RFC3339, created)
	if err != nil {
		return fmt.Errorf("-created: %w", err)
	}
	s.Created = t.UTC()
	img, err := Build(s)
	if err != nil {
		return err
	}
	ref, err := name.NewTag(s.Tag)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	return tarball.WriteToFile(out, ref, img)
}

// Build makes the image: a layer of the base files (users, certificates,
// directories) and a layer of the binary, so that a new build shares the
// first with the last.
func Build(s Spec) (v1.Image, error) {
	bin, err := os.ReadFile(s.Binary)
	if err != nil {
		return nil, err
	}
	certs, err := caBundle(s.CACerts)
	if err != nil {
		return nil, err
	}
	base, err := layer(s.Created, []file{
		{name: "etc/", mode: 0o755 | dir},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		// Go's resolver reads /etc/hosts before DNS only when told so.
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "etc/ssl/", mode: 0o755 | dir},
		{name: "etc/ssl/certs/", mode: 0o755 | dir},
		{name: certsPath[1:], mode: 0o644, data: certs},
		{name: "home/", mode: 0o755 | dir},
		{name: "home/nonroot/", mode: 0o700 | dir, owner: nonRoot},
		{name: "tmp/", mode: 0o1777 | dir},
	})
	if err != nil {
		return nil, err
	}
	app, err := layer(s.Created, []file{{name: entrypoint[1:], mode: 0o755, data: bin}})
	if err != nil {
		return nil, err
	}
	cfg := &v1.ConfigFile{
		Architecture: s.Arch,
		OS:           "linux",
		Created:      v1.Time{Time: s.Created},
		Config: v1.Config{
			Entrypoint:   []string{entrypoint},
			User:         fmt.Sprintf("%d:%d", nonRoot, nonRoot),
			WorkingDir:   "/home/nonroot",
			Env:          []string{"PATH=/", "SSL_CERT_FILE=" + certsPath},
			ExposedPorts: map[string]struct{}{"8443/tcp": {}},
			Labels: map[string]string{
				"org.opencontainers.image.title":    "terminal-apiserver",
				"org.opencontainers.image.version":  s.Version,
				"org.opencontainers.image.revision": s.Revision,
				"org.opencontainers.image.source":   s.Source,
				"org.opencontainers.image.created":  s.Created.Format(time.RFC3339),
				"org.opencontainers.image.licenses": "Apache-2.0",
			},
		},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: cfg.Created, CreatedBy: "ociimage: users, CA certificates, /home/nonroot, /tmp"}},
		mutate.Addendum{Layer: app, History: v1.History{Created: cfg.Created, CreatedBy: "ociimage: " + entrypoint}})
	if err != nil {
		return nil, err
	}
	// Append stamps no time of its own, but be sure: the commit's.
	return mutate.CreatedAt(img, cfg.Created)
}

// caBundle is the PEM bundle at path, or the NSS (Mozilla) roots that
// golang.org/x/crypto/x509roots/fallback carries at the version go.sum pins:
// the same roots on every machine, whatever its own trust store holds (a
// corporate CA a build host added would otherwise ship in the image). Roots
// with constraints PEM cannot express (distrust after a date) are left out.
func caBundle(path string) ([]byte, error) {
	if path != "" {
		return os.ReadFile(path)
	}
	var b []byte
	for r := range bundle.Roots() {
		if r.Constraint == nil {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})...)
		}
	}
	return b, nil
}

const dir = 1 << 31

type file struct {
	name  string
	mode  int64
	owner int
	data  []byte
}

func layer(at time.Time, files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode &^ dir, Uid: f.owner, Gid: f.owner, ModTime: at, Format: tar.FormatPAX,
			Typeflag: tar.TypeReg, Size: int64(len(f.data))}
		if f.mode&dir != 0 {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}
