package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	clientset "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// serverIdentity is terminal-apiserver's own client configuration (its
// ServiceAccount), impersonating whoever imp says.
func serverIdentity(t *testing.T, imp rest.ImpersonationConfig) kubernetes.Interface {
	t.Helper()
	path := os.Getenv("TERMINAL_APISERVER_KUBECONFIG")
	if path == "" {
		t.Fatal("TERMINAL_APISERVER_KUBECONFIG is unset")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Impersonate = imp
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The server's identity may impersonate users only to exec into pods
// (constrained impersonation): every other test shows it still opens
// sessions as alice; here, impersonating alice, an admin or a
// ServiceAccount, it can neither read Secrets nor delete a namespace, and
// on its own it cannot exec.
func TestServerIdentityLeastPrivilege(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name string
		imp  rest.ImpersonationConfig
	}{
		{"itself", rest.ImpersonationConfig{}},
		{"as alice", rest.ImpersonationConfig{UserName: "alice", Groups: []string{"devs"}}},
		{"as admin", rest.ImpersonationConfig{UserName: "admin", Groups: []string{"system:masters"}}},
		{"as a ServiceAccount", rest.ImpersonationConfig{UserName: "system:serviceaccount:kube-system:namespace-controller"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serverIdentity(t, tc.imp)
			if _, err := c.CoreV1().Secrets("team-a").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("listing Secrets: %v, want 403", err)
			}
			err := c.CoreV1().Namespaces().Delete(ctx, "team-b", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
			if !apierrors.IsForbidden(err) {
				t.Errorf("deleting a namespace (dry run): %v, want 403", err)
			}
		})
	}
	// Without impersonation it has no exec of its own.
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "team-a", Verb: "create", Resource: "pods", Subresource: "exec"}}}
	res, err := serverIdentity(t, rest.ImpersonationConfig{}).AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status.Allowed {
		t.Error("the server's identity may create pods/exec itself")
	}
}

// A ServiceAccount opens a session as a person does, and the shell runs as
// it (constrained impersonation of a ServiceAccount is by name only).
func TestServiceAccountOwnsSession(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := ownNamespace(t, "sa-owner")
	admin := kubeClient(t, "admin")
	sa, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "deployer-edit", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: ns}}}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expiry := int64(3600)
	tok, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(restConfig(t, "admin"))
	cfg.BearerToken = tok.Status.Token
	c, err := clientset.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pod := podWith(ns, "target", "main")
	createPod(t, pod)
	waitPodRunning(t, ns, pod.Name)
	sessions := c.TerminalV1alpha1().TerminalSessions(ns)
	var created *v1alpha1.TerminalSession
	eventually(t, 30*time.Second, "the ServiceAccount opens a session (once RBAC caught up)", func(ctx context.Context) (bool, error) {
		created, err = sessions.Create(ctx, framework.NewSession(ns, uniqueName("sa"), pod.Name), metav1.CreateOptions{})
		return err == nil, nil
	})
	t.Cleanup(func() { _ = sessions.Delete(context.Background(), created.Name, metav1.DeleteOptions{}) })
	if got := created.Status.Owner.Username; got != "system:serviceaccount:"+ns+":deployer" {
		t.Errorf("owner %q", got)
	}
	eventually(t, 30*time.Second, "the ServiceAccount's session running", func(ctx context.Context) (bool, error) {
		s, err := sessions.Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if s.Status.Phase == v1alpha1.TerminalSessionFailed || s.Status.Phase == v1alpha1.TerminalSessionClosed {
			t.Fatalf("session ended: %s: %s", s.Status.Reason, s.Status.Message)
		}
		return s.Status.Phase == v1alpha1.TerminalSessionRunning, nil
	})
}

// Readers see the owner's username and UID, not the groups and extras the
// bridge impersonates; the bridge still impersonates with them, as the
// cluster's audit log shows.
func TestOwnerIdentityRedacted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := runningSession(t, "redact")
	for _, who := range []string{"alice", "admin"} {
		got, err := terminalClient(t, who).TerminalV1alpha1().TerminalSessions("team-a").Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if o := got.Status.Owner; o == nil || o.Username != "alice" || len(o.Groups) > 0 || len(o.Extra) > 0 {
			t.Errorf("%s reads owner %+v, want the username alone", who, o)
		}
	}
	if len(s.Status.Owner.Groups) > 0 {
		t.Errorf("the create response shows the owner's groups %v", s.Status.Owner.Groups)
	}
	eventually(t, 30*time.Second, "the exec in the audit log, impersonating alice with her groups and extras", func(context.Context) (bool, error) {
		log, err := os.ReadFile(os.Getenv("KUBE_AUDIT_LOG"))
		if err != nil {
			return false, err
		}
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, `"/api/v1/namespaces/team-a/pods/shell-demo/exec?`) &&
				strings.Contains(line, `"impersonatedUser":{"username":"alice","groups":["devs","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id"`) {
				return true, nil
			}
		}
		return false, nil
	})
}
