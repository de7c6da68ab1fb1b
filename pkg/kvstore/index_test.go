package kvstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"
)

// A consumer that missed a change must not serve the incomplete history as
// if it were whole: watches expire (410) and older revisions are refused.
func TestIndexGapExpiresWatches(t *testing.T) {
	idx := newIndex(100)
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

// Deleted keys leave nothing behind in the stream once every replica has had
// time to see the deletion, and the key can be created again.
func TestTombstonesArePurged(t *testing.T) {
	ctx, s := newTestStore(t)
	s.b.cfg.TombstoneGrace = 200 * time.Millisecond
	s.b.stop()
	<-s.b.done
	jctx, stop := context.WithCancel(context.Background())
	s.b.stop, s.b.done = stop, make(chan struct{})
	go s.b.janitor(jctx)

	pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Name: "foo", Namespace: "ns"}}
	key := "/pods/ns/foo"
	out := &example.Pod{}
	if err := s.Create(ctx, key, pod, out, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, key, out, nil, storage.ValidateAllObjectFunc, nil, storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.b.stream.GetLastMsgForSubject(ctx, s.b.subject(s.pathPrefix+"pods/ns/foo"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleted key's messages still in the stream: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	pod.ResourceVersion = ""
	if err := s.Create(ctx, key, pod, &example.Pod{}, 0); err != nil {
		t.Fatalf("re-create after purge: %v", err)
	}
}
