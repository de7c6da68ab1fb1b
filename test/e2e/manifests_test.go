package e2e

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The manifests for a real cluster are accepted by a real kube-apiserver,
// admission included. cert-manager's Issuer and Certificate need its CRDs,
// which this offline cluster does not have: those two kinds are checked by
// parsing only.
func TestManifestsServerDryRun(t *testing.T) {
	t.Parallel()
	rendered := mustKubectl(t, "admin", "", "kustomize", "artifacts/deploy")
	var core, certManager []string
	for _, doc := range strings.Split(rendered, "\n---\n") {
		if strings.Contains(doc, "apiVersion: cert-manager.io/") {
			certManager = append(certManager, doc)
		} else {
			core = append(core, doc)
		}
	}
	if len(certManager) == 0 {
		t.Fatal("no cert-manager resources found; update this test")
	}
	out := mustKubectl(t, "admin", strings.Join(core, "\n---\n"), "apply", "--dry-run=server", "-f", "-")
	for _, want := range []string{
		"namespace/terminal-system",
		"serviceaccount/terminal-apiserver",
		"clusterrolebinding.rbac.authorization.k8s.io/terminal-apiserver:system:auth-delegator",
		"rolebinding.rbac.authorization.k8s.io/terminal-apiserver-auth-reader",
		"clusterrole.rbac.authorization.k8s.io/terminal-sessions-edit",
		"deployment.apps/terminal-apiserver",
		"service/terminal-apiserver",
		"apiservice.apiregistration.k8s.io/v1alpha1.terminal.meshery.io",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out)
		}
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
	mustKubectl(t, "alice", "", "apply", "--dry-run=server", "-f", "artifacts/examples/session.yaml")
}
