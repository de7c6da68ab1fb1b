package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// passwordFile writes a fresh NATS password to a file of the test's.
func passwordFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nats-password")
	if err := os.WriteFile(path, []byte(marker()+marker()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// natsTLS writes a CA and a serving certificate for 127.0.0.1 signed by it,
// and returns the three files.
func natsTLS(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, key := newKey(), newKey()
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e-nats-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.crt", "CERTIFICATE", caDER), write("nats.crt", "CERTIFICATE", srvDER), write("nats.key", "EC PRIVATE KEY", keyDER)
}

// NATS is inside the trust boundary: a real nats-server with TLS and a
// user refuses clients without the password, and terminal-apiserver works
// with it given the CA and the password. The local server's embedded NATS
// refuses clients without its password too.
func TestNATSRequiresCredentials(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	caFile, certFile, keyFile := natsTLS(t)
	pwFile := passwordFile(t)
	pw, _ := os.ReadFile(pwFile)
	password := strings.TrimSpace(string(pw))
	port := freePort(t)
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`listen: "127.0.0.1:%d"
jetstream { store_dir: %q }
tls { cert_file: %q, key_file: %q }
authorization { users: [ { user: "terminal-apiserver", password: %q } ] }
`, port, t.TempDir(), certFile, keyFile, password)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(filepath.Join(env.root, "_output/bin/nats-server"), "-c", conf)
	logf, err := os.Create(filepath.Join(env.localDir, "logs", "e2e-nats-server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	url := fmt.Sprintf("tls://127.0.0.1:%d", port)
	eventually(t, 30*time.Second, "nats-server accepting the password over TLS", func(context.Context) (bool, error) {
		nc, err := nats.Connect(url, nats.RootCAs(caFile), nats.UserInfo("terminal-apiserver", password))
		if err == nil {
			nc.Close()
		}
		return err == nil, nil
	})
	otherCA, _, _ := natsTLS(t)
	for name, opts := range map[string][]nats.Option{
		"no credentials":   {nats.RootCAs(caFile)},
		"a wrong password": {nats.RootCAs(caFile), nats.UserInfo("terminal-apiserver", "guess")},
		"an unknown user":  {nats.RootCAs(caFile), nats.UserInfo("mallory", password)},
		"no TLS":           {nats.UserInfo("terminal-apiserver", password)},
		"an untrusted CA":  {nats.UserInfo("terminal-apiserver", password), nats.RootCAs(otherCA)},
	} {
		if nc, err := nats.Connect(url, opts...); err == nil {
			nc.Close()
			t.Errorf("a client with %s was let in", name)
		}
	}
	if nc, err := nats.Connect(os.Getenv("TERMINAL_APISERVER_NATS_URL")); err == nil {
		nc.Close()
		t.Error("the local server's embedded NATS let in a client without its password")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("the embedded NATS refused a client without its password with %v, want an authorization error", err)
	}

	r := startReplica(t, "tls-nats", "--nats-url="+url, "--nats-tls-ca-file="+caFile, "--nats-password-file="+pwFile)
	c := r.client().TerminalV1alpha1().TerminalSessions("team-a")
	s, err := c.Create(ctx, framework.NewSession("team-a", uniqueName("tls-nats"), "shell-demo"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), s.Name, metav1.DeleteOptions{}) })
	eventually(t, 30*time.Second, "a session running through the replica on the TLS NATS", func(ctx context.Context) (bool, error) {
		got, err := c.Get(ctx, s.Name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == v1alpha1.TerminalSessionRunning, nil
	})
}
