package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// chartObject is what the test reads of a rendered object.
type chartObject struct {
	Kind     string                `json:"kind"`
	Metadata struct{ Name string } `json:"metadata"`
	Data     map[string]string     `json:"data"`
	Spec     struct {
		CABundle string `json:"caBundle"`
	} `json:"spec"`
}

// The chart without cert-manager, rendered as `helm upgrade` renders it,
// looking up what the cluster holds (--dry-run=server): it keeps its CA and
// certificates; a certificate within renewDays of its end is reissued from
// the same CA, so nothing that trusts the CA changes; with its CA deleted it
// makes a new one, and the APIService trusts the previous CA beside it until
// the pods' volumes hold the new certificates.
func TestChartRenewsCertificatesFromItsCA(t *testing.T) {
	t.Parallel()
	helm := os.Getenv("HELM_BIN")
	if helm == "" {
		t.Fatal("HELM_BIN is unset: run through hack/e2e.sh")
	}
	ns := uniqueName("chart-renewal")
	mustKubectl(t, "admin", "", "create", "namespace", ns)
	t.Cleanup(func() { kubectl(t, "admin", "", "delete", "namespace", ns, "--wait=false") })

	server, err := kubeClient(t, "admin").Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	render := func() map[string]chartObject {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, helm, "template", "terminal-apiserver", filepath.Join(env.root, "charts/terminal-apiserver"),
			"--namespace", ns, "--dry-run=server", "--kubeconfig", env.kubeconfig, "--kube-context", "admin",
			"--kube-version", server.GitVersion)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("helm template --dry-run=server: %v\n%s", err, errb.String())
		}
		objects := map[string]chartObject{}
		for _, doc := range strings.Split(out.String(), "\n---\n") {
			var o chartObject
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("%v in\n%s", err, doc)
			}
			if o.Kind == "Secret" || o.Kind == "APIService" {
				objects[o.Metadata.Name] = o
			}
		}
		return objects
	}
	secrets := []string{"terminal-apiserver-ca", "terminal-apiserver-serving", "nats-tls"}
	applySecrets := func(objects map[string]chartObject) {
		t.Helper()
		var docs []string
		for _, name := range secrets {
			b, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
				"metadata": map[string]any{"name": name, "namespace": ns}, "data": objects[name].Data})
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, string(b))
		}
		mustKubectl(t, "admin", strings.Join(docs, "---\n"), "apply", "--server-side", "-f", "-")
	}
	// The annotation a render sets is what the next render reads.
	annotate := func(name, notAfter string) {
		mustKubectl(t, "admin", "", "-n", ns, "annotate", "--overwrite", "secret", name, "terminal.meshery.io/not-after="+notAfter)
	}
	cert := func(o chartObject, key string) *x509.Certificate {
		t.Helper()
		return parsePEMCert(t, o.Data[key])
	}
	issuedBy := func(leaf, ca *x509.Certificate) bool { return leaf.CheckSignatureFrom(ca) == nil }
	inYears := time.Now().AddDate(1, 0, 0).UTC().Format(time.RFC3339)

	installed := render()
	applySecrets(installed)
	annotate("terminal-apiserver-serving", inYears)
	annotate("nats-tls", inYears)
	ca := cert(installed["terminal-apiserver-ca"], "tls.crt")

	// An upgrade with nothing due keeps everything.
	upgraded := render()
	for _, name := range secrets {
		if !equalData(installed[name].Data, upgraded[name].Data) {
			t.Errorf("an upgrade with nothing due changed the Secret %s", name)
		}
	}

	// The serving certificate ends within renewDays (30): reissued, by the same CA.
	annotate("terminal-apiserver-serving", time.Now().AddDate(0, 0, 10).UTC().Format(time.RFC3339))
	renewed := render()
	serving := cert(renewed["terminal-apiserver-serving"], "tls.crt")
	switch {
	case serving.SerialNumber.Cmp(cert(installed["terminal-apiserver-serving"], "tls.crt").SerialNumber) == 0:
		t.Error("a serving certificate due within renewDays was not reissued")
	case !issuedBy(serving, ca):
		t.Error("the reissued serving certificate is not the chart's CA's")
	case !equalData(installed["nats-tls"].Data, renewed["nats-tls"].Data) || !equalData(installed["terminal-apiserver-ca"].Data, renewed["terminal-apiserver-ca"].Data):
		t.Error("reissuing the serving certificate changed the CA or NATS's certificate")
	case renewed["v1alpha1.terminal.meshery.io"].Spec.CABundle != base64.StdEncoding.EncodeToString(pemOf(ca)):
		t.Error("the APIService's caBundle is not the CA alone")
	}

	// The CA deleted: a new one, and the APIService trusts both for now.
	mustKubectl(t, "admin", "", "-n", ns, "delete", "secret", "terminal-apiserver-ca")
	newCA := render()
	next := cert(newCA["terminal-apiserver-ca"], "tls.crt")
	if next.Equal(ca) {
		t.Fatal("with its CA deleted, the chart kept it")
	}
	if !issuedBy(cert(newCA["terminal-apiserver-serving"], "tls.crt"), next) || !issuedBy(cert(newCA["nats-tls"], "tls.crt"), next) {
		t.Error("with a new CA, the certificates are not reissued by it")
	}
	bundle, err := base64.StdEncoding.DecodeString(newCA["v1alpha1.terminal.meshery.io"].Spec.CABundle)
	if err != nil {
		t.Fatal(err)
	}
	trusted := x509.NewCertPool()
	trusted.AppendCertsFromPEM(bundle)
	for what, leaf := range map[string]*x509.Certificate{"previous": serving, "new": cert(newCA["terminal-apiserver-serving"], "tls.crt")} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: trusted, DNSName: "terminal-apiserver." + ns + ".svc"}); err != nil {
			t.Errorf("the caBundle during the CA's change does not verify the %s serving certificate: %v", what, err)
		}
	}
}

func equalData(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// parsePEMCert parses the first certificate of base64-encoded PEM (a
// Secret's data).
func parsePEMCert(t *testing.T, b64 string) *x509.Certificate {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
