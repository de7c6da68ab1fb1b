package incluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"k8s.io/apimachinery/pkg/util/wait"
)

// The certificates renewed as docs/operations.md says for the self-signed
// overlay (generate-certs.sh again, then apply again): every replica serves
// the new serving certificate and every NATS server its new one, none
// restarting (the server reloads its certificate from disk once the kubelet
// updates the Secret's volume, NATS's reloader has nats-server reload), a
// shell opened before goes on, and a new attach through the aggregation
// layer (a new connection to a replica, which now presents the new
// certificate) works.
func TestServingCertificateRenewedWithoutARestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	admin := kubeClient(t, "admin")
	pods := serverPods(ctx, t, admin)
	restarts := podRestarts(ctx, t, admin)
	sh := openShell(ctx, t, "renewal")
	sh.run(t, "echo before-renewal-$((6*7))", "before-renewal-42")

	generated := filepath.Join(env.deployDir, "overlays", "self-signed", "generated")
	old := readCert(t, filepath.Join(generated, "serving.crt"))
	oldNATS := readCert(t, filepath.Join(generated, "nats.crt"))
	script := exec.CommandContext(ctx, filepath.Join(env.deployDir, "overlays", "self-signed", "generate-certs.sh"))
	if out, err := script.CombinedOutput(); err != nil {
		t.Fatalf("generate-certs.sh: %v\n%s", err, out)
	}
	renewed := readCert(t, filepath.Join(generated, "serving.crt"))
	renewedNATS := readCert(t, filepath.Join(generated, "nats.crt"))
	if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 || renewedNATS.SerialNumber.Cmp(oldNATS.SerialNumber) == 0 {
		t.Fatal("generate-certs.sh did not renew the certificates")
	}
	apply := exec.CommandContext(ctx, env.kubectl, "--kubeconfig", env.kubeconfig, "--context", "admin",
		"apply", "--server-side", "--force-conflicts", "-k", env.overlay)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -k: %v\n%s", err, out)
	}

	// The kubelet updates a Secret's volume on its next sync of the pod
	// (a minute apart by default), then the server notices the files.
	start := time.Now()
	for _, p := range pods {
		err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			served, err := servedCert(ctx, p.Status.PodIP)
			if err != nil {
				t.Logf("pod %s: %v", p.Name, err)
				return false, nil
			}
			return served.SerialNumber.Cmp(renewed.SerialNumber) == 0, nil
		})
		if err != nil {
			t.Fatalf("pod %s does not serve the renewed certificate (serial %x): %v", p.Name, renewed.SerialNumber, err)
		}
	}
	t.Logf("both replicas serve the renewed certificate %s after the apply", time.Since(start).Round(time.Second))
	creds, _ := natsCredentials(ctx, t, admin)
	for _, p := range runningPods(ctx, t, admin, "app.kubernetes.io/name=nats", 3) {
		err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			served, err := servedNATSCert(p.Status.PodIP, creds)
			if err != nil {
				t.Logf("pod %s: %v", p.Name, err)
				return false, nil
			}
			return served.SerialNumber.Cmp(renewedNATS.SerialNumber) == 0, nil
		})
		if err != nil {
			t.Fatalf("NATS pod %s does not serve the renewed certificate (serial %x): %v", p.Name, renewedNATS.SerialNumber, err)
		}
	}
	t.Logf("the three NATS servers serve the renewed certificate %s after the apply", time.Since(start).Round(time.Second))
	for uid, n := range podRestarts(ctx, t, admin) {
		if want, ok := restarts[uid]; !ok || n != want {
			t.Errorf("pod %s is new or restarted during the renewal (restarts %d, before %d)", uid, n, want)
		}
	}

	sh.run(t, "echo same-shell-$((6*7))", "same-shell-42")
	sh.attach()
	sh.run(t, "echo new-attach-$((6*7))", "new-attach-42")
	sh.exit(t, 0)
}

// servedNATSCert is the certificate a NATS server presents to a client,
// verified against the overlay's CA.
func servedNATSCert(podIP string, creds natsUser) (*x509.Certificate, error) {
	caPEM, err := os.ReadFile(env.caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	var served *x509.Certificate
	nc, err := nats.Connect("tls://"+net.JoinHostPort(podIP, "4222"), creds.option(), nats.Timeout(5*time.Second),
		nats.Secure(&tls.Config{RootCAs: pool, ServerName: "nats." + env.namespace + ".svc", MinVersion: tls.VersionTLS12,
			VerifyConnection: func(cs tls.ConnectionState) error {
				served = cs.PeerCertificates[0]
				return nil
			}}))
	if err != nil {
		return nil, err
	}
	nc.Close()
	return served, nil
}

// readCert reads the first certificate in a PEM file.
func readCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("no PEM in %s", file)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// servedCert is the certificate a replica presents on its port, verified
// as the aggregator verifies it: against the overlay's CA, for the
// Service's name.
func servedCert(ctx context.Context, podIP string) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(env.caFile)
	if err != nil {
		return nil, err
	}
	pool.AppendCertsFromPEM(caPEM)
	d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "terminal-apiserver." + env.namespace + ".svc"}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(podIP, "8443"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}
