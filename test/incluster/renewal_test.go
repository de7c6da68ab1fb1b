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

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// The serving certificate renewed as docs/operations.md says for the
// self-signed overlay (generate-certs.sh again, then apply again): every
// replica serves the new certificate without restarting (the server reloads
// it from disk once the kubelet updates the Secret's volume), a shell
// opened before goes on, and a new attach through the aggregation layer
// (a new connection to a replica, which now presents the new certificate)
// works.
func TestServingCertificateRenewedWithoutARestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	admin := kubeClient(t, "admin")
	pods := serverPods(ctx, t, admin)
	restarts := map[types.UID]int32{}
	for _, p := range pods {
		restarts[p.UID] = p.Status.ContainerStatuses[0].RestartCount
	}
	sh := openShell(ctx, t, "renewal")
	sh.run(t, "echo before-renewal-$((6*7))", "before-renewal-42")

	generated := filepath.Join(env.deployDir, "overlays", "self-signed", "generated")
	old := readCert(t, filepath.Join(generated, "serving.crt"))
	script := exec.CommandContext(ctx, filepath.Join(env.deployDir, "overlays", "self-signed", "generate-certs.sh"))
	if out, err := script.CombinedOutput(); err != nil {
		t.Fatalf("generate-certs.sh: %v\n%s", err, out)
	}
	renewed := readCert(t, filepath.Join(generated, "serving.crt"))
	if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("generate-certs.sh did not renew the serving certificate")
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
	for _, p := range serverPods(ctx, t, admin) {
		want, known := restarts[p.UID]
		if !known || p.Status.ContainerStatuses[0].RestartCount != want {
			t.Errorf("pod %s (restarts %d) is not one of the replicas from before the renewal %v, or restarted", p.Name, p.Status.ContainerStatuses[0].RestartCount, restarts)
		}
	}

	sh.run(t, "echo same-shell-$((6*7))", "same-shell-42")
	sh.attach()
	sh.run(t, "echo new-attach-$((6*7))", "new-attach-42")
	sh.exit(t, 0)
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
