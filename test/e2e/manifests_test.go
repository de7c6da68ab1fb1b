package e2e

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The manifests for a real cluster, in both overlays of the kustomize base and
// both certificate modes of the Helm chart, are accepted by a real
// kube-apiserver, admission included. cert-manager's Issuer and Certificate
// need its CRDs, which this offline cluster does not have: those kinds are
// checked by parsing only. The self-signed overlay's certificates are made by
// its script, as a user would, and its APIService verifies them.
func TestManifestsServerDryRun(t *testing.T) {
	t.Parallel()
	// A copy of artifacts/deploy: the script writes into its overlay, and a
	// developer's own generated/ stays as it was.
	deploy := filepath.Join(t.TempDir(), "deploy")
	if out, err := exec.Command("cp", "-r", filepath.Join(env.root, "artifacts/deploy"), deploy).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	_ = os.RemoveAll(filepath.Join(deploy, "overlays/self-signed/generated"))
	if out, err := exec.Command(filepath.Join(deploy, "overlays/self-signed/generate-certs.sh")).CombinedOutput(); err != nil {
		t.Fatalf("generate-certs.sh: %v\n%s", err, out)
	}
	// The Helm chart, rendered by hack/test-chart.sh (hack/e2e.sh runs it),
	// in the same two modes.
	chart := func(mode string) string {
		b, err := os.ReadFile(filepath.Join(env.root, "_output/chart", mode+".yaml"))
		if err != nil {
			t.Fatalf("%v (hack/test-chart.sh renders the chart)", err)
		}
		return string(b)
	}
	for _, c := range []struct{ name, overlay, rendered string }{
		{"kustomize/cert-manager", "cert-manager", mustKubectl(t, "admin", "", "kustomize", filepath.Join(deploy, "overlays/cert-manager"))},
		{"kustomize/self-signed", "self-signed", mustKubectl(t, "admin", "", "kustomize", filepath.Join(deploy, "overlays/self-signed"))},
		{"helm/cert-manager", "cert-manager", chart("cert-manager")},
		{"helm/self-signed", "self-signed", chart("self-signed")},
	} {
		overlay, rendered := c.overlay, c.rendered
		t.Run(c.name, func(t *testing.T) {
			var core, certManager []string
			for _, doc := range strings.Split(rendered, "\n---\n") {
				if strings.TrimSpace(strings.TrimLeft(doc, "-")) == "" {
					continue
				}
				if strings.Contains(doc, "apiVersion: cert-manager.io/") {
					certManager = append(certManager, doc)
				} else {
					core = append(core, doc)
				}
			}
			if (overlay == "cert-manager") != (len(certManager) > 0) {
				t.Fatalf("%d cert-manager resources in the %s overlay", len(certManager), overlay)
			}
			out := mustKubectl(t, "admin", strings.Join(core, "\n---\n"), "apply", "--dry-run=server", "-f", "-")
			want := []string{
				"serviceaccount/terminal-apiserver",
				"clusterrolebinding.rbac.authorization.k8s.io/terminal-apiserver:system:auth-delegator",
				"rolebinding.rbac.authorization.k8s.io/terminal-apiserver-auth-reader",
				"clusterrole.rbac.authorization.k8s.io/terminal-sessions-edit",
				"deployment.apps/terminal-apiserver",
				"service/terminal-apiserver",
				"apiservice.apiregistration.k8s.io/v1alpha1.terminal.meshery.io",
			}
			if overlay == "self-signed" {
				want = append(want, "secret/terminal-apiserver-serving", "secret/nats-tls")
			}
			if strings.HasPrefix(c.name, "helm/") {
				// The chart generates NATS's password (kustomize takes yours);
				// helm install --create-namespace makes the namespace.
				want = append(want, "secret/nats-auth", "statefulset.apps/nats", "configmap/terminal-apiserver-audit-policy")
			} else {
				want = append(want, "namespace/terminal-system")
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("dry-run output lacks %q:\n%s", w, out)
				}
			}
			// Never insecureSkipTLSVerify; the CA to verify with comes from
			// cert-manager's cainjector or from the script.
			var api struct {
				Metadata struct{ Annotations map[string]string }
				Spec     struct {
					CABundle              string `json:"caBundle"`
					InsecureSkipTLSVerify bool   `json:"insecureSkipTLSVerify"`
				}
			}
			for _, doc := range core {
				if strings.Contains(doc, "kind: APIService") {
					if err := yaml.Unmarshal([]byte(doc), &api); err != nil {
						t.Fatal(err)
					}
				}
			}
			if api.Spec.InsecureSkipTLSVerify {
				t.Error("the APIService skips TLS verification")
			}
			if overlay == "self-signed" && api.Spec.CABundle == "" || overlay == "cert-manager" && api.Metadata.Annotations["cert-manager.io/inject-ca-from"] == "" {
				t.Errorf("the %s overlay's APIService has no CA to verify with: %+v", overlay, api)
			}
			if overlay == "self-signed" {
				verifyGeneratedCerts(t, core, api.Spec.CABundle)
			}
			for _, doc := range certManager {
				var obj struct {
					APIVersion, Kind string
					Metadata         struct{ Name, Namespace string }
				}
				if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
					t.Errorf("cert-manager resource does not parse: %v\n%s", err, doc)
				}
				if obj.Kind == "" || obj.Metadata.Name == "" || obj.Metadata.Namespace != "terminal-system" {
					t.Errorf("cert-manager resource lacks kind, name or the terminal-system namespace:\n%s", doc)
				}
			}
		})
	}
	mustKubectl(t, "alice", "", "apply", "--dry-run=server", "-f", "artifacts/examples/session.yaml")
}

// verifyGeneratedCerts checks the generated certificates as their clients
// will: the serving certificate against the APIService's caBundle for the
// name the aggregator dials, NATS's for its Service and a cluster route's
// name, as server and as client (routes authenticate both ways).
func verifyGeneratedCerts(t *testing.T, docs []string, caBundle string) {
	t.Helper()
	ca, err := base64.StdEncoding.DecodeString(caBundle)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		t.Fatal("the APIService's caBundle holds no certificate")
	}
	secrets := map[string]map[string]string{}
	for _, doc := range docs {
		var sec struct {
			Kind     string
			Metadata struct{ Name string }
			Data     map[string]string
		}
		if yaml.Unmarshal([]byte(doc), &sec) == nil && sec.Kind == "Secret" {
			secrets[sec.Metadata.Name] = sec.Data
		}
	}
	check := func(secret string, usage x509.ExtKeyUsage, names ...string) {
		pemData, err := base64.StdEncoding.DecodeString(secrets[secret]["tls.crt"])
		if err != nil {
			t.Fatalf("%s: %v", secret, err)
		}
		block, _ := pem.Decode(pemData)
		if block == nil {
			t.Fatalf("%s: no certificate in tls.crt", secret)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", secret, err)
		}
		for _, n := range names {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: n, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("%s does not verify for %s (%v): %v", secret, n, usage, err)
			}
		}
	}
	check("terminal-apiserver-serving", x509.ExtKeyUsageServerAuth, "terminal-apiserver.terminal-system.svc")
	check("nats-tls", x509.ExtKeyUsageServerAuth, "nats.terminal-system.svc", "nats-0.nats-headless.terminal-system.svc")
	check("nats-tls", x509.ExtKeyUsageClientAuth, "nats-1.nats-headless.terminal-system.svc")
}
