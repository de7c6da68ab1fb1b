/*
Copyright The Meshery Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package terminalsession

import (
	"context"
	"strings"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/install"
	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
)

func newScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	return scheme
}

var jane = &user.DefaultInfo{
	Name:   "jane",
	UID:    "u-42",
	Groups: []string{"dev", "system:authenticated"},
	Extra:  map[string][]string{"authentication.kubernetes.io/credential-id": {"X509SHA256=abc"}},
}

func userContext(u user.Info) context.Context {
	return genericapirequest.WithUser(genericapirequest.WithNamespace(context.Background(), "dev"), u)
}

func newSession() *terminal.TerminalSession {
	return &terminal.TerminalSession{
		ObjectMeta: metav1.ObjectMeta{Name: "debug", Namespace: "dev"},
		Spec: terminal.TerminalSessionSpec{
			Target: terminal.TerminalTarget{Pod: "web-0", Container: "app"},
			TTY:    ptr.To(true),
			Size:   &terminal.TerminalSize{Cols: 80, Rows: 24},
		},
	}
}

func TestPrepareForCreate(t *testing.T) {
	strategy := NewStrategy(newScheme())
	groups := append([]string(nil), jane.Groups...)
	u := &user.DefaultInfo{Name: jane.Name, UID: jane.UID, Groups: groups, Extra: map[string][]string{"k": {"v"}}}

	s := newSession()
	// A client must not be able to pick the owner, phase or anything else in status.
	s.Status = terminal.TerminalSessionStatus{
		Phase:    terminal.TerminalSessionRunning,
		Owner:    &terminal.SessionOwner{Username: "admin", Groups: []string{"system:masters"}},
		Subjects: "terminal.someone-else",
		ExitCode: ptr.To[int32](0),
	}
	strategy.PrepareForCreate(userContext(u), s)

	want := terminal.TerminalSessionStatus{
		Phase: terminal.TerminalSessionPending,
		Owner: &terminal.SessionOwner{
			Username: "jane",
			UID:      "u-42",
			Groups:   []string{"dev", "system:authenticated"},
			Extra:    map[string][]string{"k": {"v"}},
		},
	}
	if !apiequality.Semantic.DeepEqual(s.Status, want) {
		t.Errorf("status = %+v, want %+v", s.Status, want)
	}
	if s.Generation != 1 {
		t.Errorf("generation = %d, want 1", s.Generation)
	}

	// The owner is a copy: whatever later happens to the request's user.Info must not
	// reach the stored object.
	groups[0] = "mutated"
	u.Extra["k"][0] = "mutated"
	if s.Status.Owner.Groups[0] != "dev" || s.Status.Owner.Extra["k"][0] != "v" {
		t.Errorf("owner aliases the request's user info: %+v", s.Status.Owner)
	}
}

// The subject prefix comes from the server-generated UID, never from the name or
// anything else the client wrote.
func TestPrepareForCreateSubjects(t *testing.T) {
	s := newSession()
	s.Name = "a.b.>"
	s.UID = "0b7b6d1e-5a1c-4c1e-9f57-2f0c4f1a9d3e"
	s.Status.Subjects = "terminal.someone-else"
	NewStrategy(newScheme()).PrepareForCreate(userContext(jane), s)
	if s.Status.Subjects != "terminal.0b7b6d1e-5a1c-4c1e-9f57-2f0c4f1a9d3e" {
		t.Errorf("subjects = %q, want terminal.<uid>", s.Status.Subjects)
	}
}

func TestPrepareForCreateWithoutUser(t *testing.T) {
	s := newSession()
	NewStrategy(newScheme()).PrepareForCreate(genericapirequest.WithNamespace(context.Background(), "dev"), s)
	if s.Status.Owner != nil {
		t.Errorf("owner = %+v, want none when the request has no user", s.Status.Owner)
	}
	if s.Status.Phase != terminal.TerminalSessionPending {
		t.Errorf("phase = %q, want Pending", s.Status.Phase)
	}
}

func runningSession() *terminal.TerminalSession {
	s := newSession()
	s.Generation = 1
	s.Status = terminal.TerminalSessionStatus{
		Phase:     terminal.TerminalSessionRunning,
		Owner:     &terminal.SessionOwner{Username: "jane"},
		Subjects:  "terminal.0b7b6d1e",
		StartedAt: ptr.To(metav1.NewTime(time.Unix(1700000000, 0))),
	}
	return s
}

func TestPrepareForUpdateKeepsStatus(t *testing.T) {
	strategy := NewStrategy(newScheme())
	old := runningSession()
	s := old.DeepCopy()
	s.Labels = map[string]string{"team": "a"}
	s.Status = terminal.TerminalSessionStatus{Phase: terminal.TerminalSessionClosed}

	strategy.PrepareForUpdate(userContext(jane), s, old)
	if !apiequality.Semantic.DeepEqual(s.Status, old.Status) {
		t.Errorf("status changed through the main resource: %+v", s.Status)
	}
	if s.Labels["team"] != "a" {
		t.Errorf("labels were not updated: %v", s.Labels)
	}
	if s.Generation != 1 {
		t.Errorf("generation = %d, want 1 for a metadata-only change", s.Generation)
	}

	s = old.DeepCopy()
	s.Spec.Command = []string{"sh"}
	strategy.PrepareForUpdate(userContext(jane), s, old)
	if s.Generation != 2 {
		t.Errorf("generation = %d, want 2 after a spec change", s.Generation)
	}
	if errs := strategy.ValidateUpdate(userContext(jane), s, old); len(errs) == 0 {
		t.Error("spec change passed update validation")
	}
}

func TestStatusPrepareForUpdate(t *testing.T) {
	strategy := NewStatusStrategy(NewStrategy(newScheme()))
	old := runningSession()
	old.Labels = map[string]string{"team": "a"}

	s := old.DeepCopy()
	s.Spec.Target.Pod = "elsewhere"
	s.Labels = map[string]string{"team": "b"}
	s.Generation = 7
	s.Status.Owner = &terminal.SessionOwner{Username: "mallory"}
	s.Status.Subjects = "terminal.another-session"
	s.Status.Phase = terminal.TerminalSessionClosed
	s.Status.Reason = "Exited"
	s.Status.ExitCode = ptr.To[int32](3)

	strategy.PrepareForUpdate(userContext(jane), s, old)
	if !apiequality.Semantic.DeepEqual(s.Spec, old.Spec) {
		t.Errorf("spec changed through the status subresource: %+v", s.Spec)
	}
	if s.Labels["team"] != "a" || s.Generation != 1 {
		t.Errorf("metadata changed through the status subresource: labels %v, generation %d", s.Labels, s.Generation)
	}
	if s.Status.Owner.Username != "jane" {
		t.Errorf("owner = %q, want the stored owner", s.Status.Owner.Username)
	}
	if s.Status.Subjects != old.Status.Subjects {
		t.Errorf("subjects = %q, want the stored %q", s.Status.Subjects, old.Status.Subjects)
	}
	if s.Status.Phase != terminal.TerminalSessionClosed || *s.Status.ExitCode != 3 {
		t.Errorf("status update was lost: %+v", s.Status)
	}
	if errs := strategy.ValidateUpdate(userContext(jane), s, old); len(errs) != 0 {
		t.Errorf("valid status update rejected: %v", errs)
	}
}

func TestStatusValidateUpdate(t *testing.T) {
	strategy := NewStatusStrategy(NewStrategy(newScheme()))
	old := runningSession()
	s := old.DeepCopy()
	s.Status.ExitCode = ptr.To[int32](0)
	strategy.PrepareForUpdate(userContext(jane), s, old)
	errs := strategy.ValidateUpdate(userContext(jane), s, old)
	if len(errs) != 1 || errs[0].Field != "status.exitCode" {
		t.Errorf("errors = %v, want one on status.exitCode", errs)
	}
}

func TestGetResetFields(t *testing.T) {
	version := fieldpath.APIVersion("terminal.meshery.io/v1alpha1")
	main := NewStrategy(newScheme()).GetResetFields()
	if set, ok := main[version]; !ok || !set.Has(fieldpath.MakePathOrDie("status")) || set.Has(fieldpath.MakePathOrDie("spec")) {
		t.Errorf("main resource reset fields = %v, want status only", main)
	}
	status := NewStatusStrategy(NewStrategy(newScheme())).GetResetFields()
	set, ok := status[version]
	if !ok || !set.Has(fieldpath.MakePathOrDie("spec")) || !set.Has(fieldpath.MakePathOrDie("status", "owner")) ||
		!set.Has(fieldpath.MakePathOrDie("status", "subjects")) {
		t.Errorf("status reset fields = %v, want spec, status.owner and status.subjects", status)
	}
	if set.Has(fieldpath.MakePathOrDie("status")) || set.Has(fieldpath.MakePathOrDie("status", "phase")) {
		t.Errorf("status reset fields = %v reset the status itself", status)
	}
}

func TestStrategyFlags(t *testing.T) {
	strategy := NewStrategy(newScheme())
	ctx := userContext(jane)
	if !strategy.NamespaceScoped() {
		t.Error("sessions must be namespaced")
	}
	if strategy.AllowCreateOnUpdate(ctx) {
		t.Error("create on update must be refused")
	}
	if !strategy.AllowUnconditionalUpdate(ctx) {
		t.Error("unconditional updates must be allowed")
	}
	if w := strategy.WarningsOnCreate(ctx, newSession()); w != nil {
		t.Errorf("warnings on create = %v", w)
	}
}

func TestSelectableFields(t *testing.T) {
	s := runningSession()
	_, set, err := GetAttrs(s)
	if err != nil {
		t.Fatal(err)
	}
	want := fields.Set{
		"metadata.name":         "debug",
		"metadata.namespace":    "dev",
		"spec.target.pod":       "web-0",
		"spec.target.container": "app",
		"status.phase":          "Running",
		"status.owner.username": "jane",
	}
	if !apiequality.Semantic.DeepEqual(set, want) {
		t.Errorf("selectable fields = %v, want %v", set, want)
	}

	// Every field offered here must also be accepted by the API version's field label
	// conversion, or the server rejects the selector before it reaches the registry.
	scheme := newScheme()
	gvk := v1alpha1.SchemeGroupVersion.WithKind("TerminalSession")
	for label := range set {
		if _, _, err := scheme.ConvertFieldLabel(gvk, label, "x"); err != nil {
			t.Errorf("field %q is selectable in the registry but not in the API: %v", label, err)
		}
	}

	s.Status.Owner = nil
	if _, set, _ := GetAttrs(s); set["status.owner.username"] != "" {
		t.Errorf("owner username without an owner = %q", set["status.owner.username"])
	}
	if _, _, err := GetAttrs(&terminal.TerminalSessionList{}); err == nil {
		t.Error("GetAttrs accepted a list")
	}
}

func TestMatchTerminalSession(t *testing.T) {
	s := runningSession()
	s.Labels = map[string]string{"team": "a"}
	cases := []struct {
		label, field string
		want         bool
	}{
		{"", "spec.target.pod=web-0", true},
		{"", "spec.target.pod=web-1", false},
		{"", "status.owner.username=jane,status.phase=Running", true},
		{"", "status.phase!=Closed", true},
		{"team=a", "spec.target.container=app", true},
		{"team=b", "", false},
	}
	for _, tc := range cases {
		ls, err := labels.Parse(tc.label)
		if err != nil {
			t.Fatal(err)
		}
		fs, err := fields.ParseSelector(tc.field)
		if err != nil {
			t.Fatal(err)
		}
		pred := MatchTerminalSession(ls, fs)
		got, err := pred.Matches(s)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("labels %q fields %q: match = %v, want %v", tc.label, tc.field, got, tc.want)
		}
	}
}

// A spec above a ceiling is refused with the ceiling and its flag; a field
// left out (the server's default) or within the ceiling passes.
func TestValidateCeilings(t *testing.T) {
	s := NewStrategy(newScheme())
	s.ceilings = Ceilings{IdleTimeout: time.Hour, MaxDuration: 24 * time.Hour, DetachGracePeriod: time.Hour}
	d := func(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }
	for _, tc := range []struct {
		name string
		spec terminal.TerminalSessionSpec
		want string // the error's field and text; "" for none
	}{
		{"defaults", terminal.TerminalSessionSpec{}, ""},
		{"within", terminal.TerminalSessionSpec{IdleTimeout: d(time.Hour), MaxDuration: d(time.Hour), DetachGracePeriod: d(time.Minute)}, ""},
		{"ten years", terminal.TerminalSessionSpec{MaxDuration: d(87600 * time.Hour)},
			`spec.maxDuration: Invalid value: "87600h0m0s": 87600h0m0s is above this server's ceiling of 24h0m0s (terminal-apiserver --max-duration-max)`},
		{"no idle timeout", terminal.TerminalSessionSpec{IdleTimeout: d(0)},
			`spec.idleTimeout: Invalid value: "0s": 0 (none) is above this server's ceiling of 1h0m0s (terminal-apiserver --idle-timeout-max)`},
		{"forever detached", terminal.TerminalSessionSpec{DetachGracePeriod: d(0)}, "spec.detachGracePeriod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := s.ceilings.validate(&tc.spec)
			switch {
			case tc.want == "" && len(errs) > 0:
				t.Errorf("refused: %v", errs)
			case tc.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want)):
				t.Errorf("errors %v, want one containing %q", errs, tc.want)
			}
		})
	}
}
