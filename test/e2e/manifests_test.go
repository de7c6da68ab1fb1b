package e2e

import (
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
	script := exec.Command("artifacts/deploy/overlays/self-signed/generate-certs.sh")
	script.Dir = env.root
	if out, err := script.CombinedOutput(); err != nil {
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
		{"kustomize/cert-manager", "cert-manager", mustKubectl(t, "admin", "", "kustomize", "artifacts/deploy/overlays/cert-manager")},
		{"kustomize/self-signed", "self-signed", mustKubectl(t, "admin", "", "kustomize", "artifacts/deploy/overlays/self-signed")},
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
