package kvstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"
)

// A consumer that missed a change must not serve the incomplete history as
// if it were whole: watches expire (410) and older revisions are refused.
func TestIndexGapExpiresWatches(t *testing.T) {
	idx := newIndex(100, 0)
	idx.apply(1, "/pods/a", []byte("v1"), false, 0, true, true)
	w := &watchChan{key: "/pods/", recursive: true, startRev: 1, signal: make(chan struct{}, 1), s: &Store{maxBacklog: 100}}
	if _, err := idx.register(w, false); err != nil {
		t.Fatal(err)
	}
	// Revision 2 (a->v2) never reached this index; 3 says it replaced 2.
	idx.apply(3, "/pods/a", []byte("v3"), false, 2, true, true)
	if _, _, expired := w.pop(); !expired {
		t.Fatal("watch not expired after a gap")
	}
	if _, _, err := idx.list("/pods/", true, 2); !errors.Is(err, errCompacted) {
		t.Fatalf("list at a revision inside the gap: want errCompacted, got %v", err)
	}
	got, rev, err := idx.list("/pods/", true, 0)
	if err != nil || rev != 3 || len(got) != 1 || string(got[0].value) != "v3" {
		t.Fatalf("current list after gap: %v rev %d err %v", got, rev, err)
	}
}

// Compaction leaves only the latest message of a live key and nothing of a
// deleted one, and the deleted key can be created again.
func TestCompaction(t *testing.T) {
	ctx, s := newTestStore(t)
	update := func(key string) {
		err := s.GuaranteedUpdate(ctx, key, &example.Pod{}, false, nil,
			storage.SimpleUpdate(func(obj runtime.Object) (runtime.Object, error) {
				p := obj.(*example.Pod)
				p.Labels = map[string]string{"n": p.ResourceVersion}
				return p, nil
			}), nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"live", "gone"} {
		pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
		if err := s.Create(ctx, "/pods/ns/"+name, pod, &example.Pod{}, 0); err != nil {
			t.Fatal(err)
		}
	}
	update("/pods/ns/live")
	update("/pods/ns/live")
	if err := s.Delete(ctx, "/pods/ns/gone", &example.Pod{}, nil, storage.ValidateAllObjectFunc, nil, storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cut, err := s.b.sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.b.compact(ctx, cut)

	info, err := s.b.stream.Info(ctx, jetstream.WithSubjectFilter(s.b.cfg.Subject+".>"))
	if err != nil {
		t.Fatal(err)
	}
	live, gone := s.b.subject(s.pathPrefix+"pods/ns/live"), s.b.subject(s.pathPrefix+"pods/ns/gone")
	if n := info.State.Subjects[live]; n != 1 {
		t.Errorf("live key keeps %d messages, want 1", n)
	}
	if n, ok := info.State.Subjects[gone]; ok {
		t.Errorf("deleted key keeps %d messages, want none", n)
	}
	// The stream's last message (the deletion) is gone now: consistent reads
	// and a restart must not wait for it.
	if err := s.GetList(ctx, "/pods/", storage.ListOptions{Recursive: true, Predicate: storage.Everything}, &example.PodList{}); err != nil {
		t.Fatalf("consistent list after the last message was purged: %v", err)
	}
	restarted, err := New(ctx, Config{
		JetStream: sharedBroker.b.JetStream, Stream: s.b.cfg, Codec: s.codec,
		NewFunc:        s.newFunc,
		ResourcePrefix: "/pods/", Transformer: s.xf(),
	})
	if err != nil {
		t.Fatalf("reopen after the last message was purged: %v", err)
	}
	restarted.Close()

	got := &example.Pod{}
	if err := s.Get(ctx, "/pods/ns/live", storage.GetOptions{}, got); err != nil || got.Labels["n"] == "" {
		t.Fatalf("live key after compaction: %v %v", got.Labels, err)
	}
	pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Name: "gone", Namespace: "ns"}}
	if err := s.Create(ctx, "/pods/ns/gone", pod, &example.Pod{}, 0); err != nil {
		t.Fatalf("re-create after compaction: %v", err)
	}
}

// The watch history is bounded in bytes as well as in changes: large
// objects push the oldest changes out, and revisions before them get 410.
func TestIndexHistoryBytes(t *testing.T) {
	idx := newIndex(100, 10000)
	big := make([]byte, 3000)
	for rev := uint64(1); rev <= 10; rev++ {
		idx.apply(rev, "/pods/a", big, false, rev-1, rev > 1, true)
	}
	idx.mu.Lock()
	kept, bytes := len(idx.history), idx.historyBytes
	idx.mu.Unlock()
	if bytes > 10000 || kept == 0 {
		t.Fatalf("history keeps %d events, %d bytes; want at least one, at most 10000 bytes", kept, bytes)
	}
	if _, _, err := idx.list("/pods/", true, 2); !errors.Is(err, errCompacted) {
		t.Fatalf("list at a forgotten revision: %v, want errCompacted", err)
	}
	if _, _, err := idx.list("/pods/", true, 10); err != nil {
		t.Fatalf("list at the current revision: %v", err)
	}
}

// An object above the size limit is refused with 413, on create and update.
func TestObjectSizeLimit(t *testing.T) {
	ctx, s := newTestStore(t)
	s.maxObject = 4096
	pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "ns",
		Annotations: map[string]string{"x": strings.Repeat("x", 5000)}}}
	if err := s.Create(ctx, "/pods/ns/big", pod, &example.Pod{}, 0); !apierrors.IsRequestEntityTooLargeError(err) {
		t.Fatalf("create of a 5 KB object: %v, want 413", err)
	}
	small := &example.Pod{ObjectMeta: metav1.ObjectMeta{Name: "small", Namespace: "ns"}}
	if err := s.Create(ctx, "/pods/ns/small", small, &example.Pod{}, 0); err != nil {
		t.Fatal(err)
	}
	err := s.GuaranteedUpdate(ctx, "/pods/ns/small", &example.Pod{}, false, nil,
		storage.SimpleUpdate(func(obj runtime.Object) (runtime.Object, error) {
			p := obj.(*example.Pod)
			p.Annotations = map[string]string{"x": strings.Repeat("x", 5000)}
			return p, nil
		}), nil)
	if !apierrors.IsRequestEntityTooLargeError(err) || !strings.Contains(err.Error(), "4096 bytes") {
		t.Fatalf("update to 5 KB: %v, want 413 naming the limit", err)
	}
}
