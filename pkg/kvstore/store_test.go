package kvstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"k8s.io/apimachinery/pkg/api/apitesting"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	"k8s.io/apiserver/pkg/storage"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	"k8s.io/apiserver/pkg/storage/value"

	"github.com/meshery/terminal-apiserver/pkg/broker"
)

// These tests hold the store to k8s.io/apiserver's own storage suite, the one
// the etcd3 store passes, on a real embedded nats-server with JetStream.

var (
	scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(scheme)
)

const testPrefix = "test!"

func init() {
	metav1.AddToGroupVersion(scheme, metav1.SchemeGroupVersion)
	utilruntime.Must(example.AddToScheme(scheme))
	utilruntime.Must(examplev1.AddToScheme(scheme))
}

var sharedBroker struct {
	b    *broker.Broker
	next atomic.Int64
}

func TestMain(m *testing.M) {
	dir, err := tempDir()
	if err != nil {
		panic(err)
	}
	b, err := broker.Start(context.Background(), broker.Config{DataDir: dir, Name: "kvstore-test"})
	if err != nil {
		panic(err)
	}
	sharedBroker.b = b
	code := m.Run()
	b.Close()
	removeAll(dir)
	exit(code)
}

// testStore is a fresh store on its own stream, wrapped with the hooks the
// suite uses to swap the value transformer.
type testStore struct {
	*Store
}

func (s *testStore) UpdatePrefixTransformer(modifier storagetesting.PrefixTransformerModifier) func() {
	orig := s.xf()
	pt := *orig.(*storagetesting.PrefixTransformer)
	next := modifier(&pt)
	s.transformer.Store(&next)
	return func() { s.transformer.Store(&orig) }
}

func (s *testStore) UpdateTransformer(modifier storagetesting.TransformerModifier) func() {
	orig := s.xf()
	next := modifier(orig)
	s.transformer.Store(&next)
	return func() { s.transformer.Store(&orig) }
}

func newTestStore(t testing.TB) (context.Context, *testStore) {
	n := sharedBroker.next.Add(1)
	var tr value.Transformer = storagetesting.NewPrefixTransformer([]byte(testPrefix), false)
	s, err := New(context.Background(), Config{
		JetStream: sharedBroker.b.JetStream,
		Stream: StreamConfig{
			Name:    fmt.Sprintf("TEST_%d", n),
			Subject: fmt.Sprintf("test%d", n),
			Memory:  true,
		},
		Codec:          apitesting.TestCodec(codecs, examplev1.SchemeGroupVersion),
		NewFunc:        func() runtime.Object { return &example.Pod{} },
		ResourcePrefix: "/pods/",
		GroupResource:  schema.GroupResource{Resource: "pods"},
		Transformer:    tr,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		_ = sharedBroker.b.JetStream.DeleteStream(context.Background(), s.b.cfg.Name)
	})
	return context.Background(), &testStore{s}
}

// increaseRV writes outside the resource prefix, as the etcd suite's
// helper writes an unrelated etcd key.
func increaseRV(s *testStore) storagetesting.IncreaseRVFunc {
	return func(ctx context.Context, t *testing.T) int64 {
		ack, err := sharedBroker.b.JetStream.PublishMsg(ctx, &nats.Msg{Subject: s.b.subject("/increaseRV"), Data: []byte("ok")})
		if err != nil {
			t.Fatalf("increase RV: %v", err)
		}
		return int64(ack.Sequence)
	}
}

func compaction(s *testStore) storagetesting.Compaction {
	return func(ctx context.Context, t *testing.T, resourceVersion string) {
		rv, err := storage.APIObjectVersioner{}.ParseResourceVersion(resourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		// Compaction applies to what the index has seen.
		if err := s.b.idx.waitFor(ctx, rv); err != nil {
			t.Fatal(err)
		}
		s.Compact(rv)
		// etcd's compactor records the compaction in a key of its own, and
		// the suite expects that write to move the revision on.
		increaseRV(s)(ctx, t)
	}
}

func TestCreate(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestCreate(ctx, t, s, func(ctx context.Context, t *testing.T, key string) {
		// Stored objects carry no resourceVersion or selfLink.
		rec, _, err := s.b.get(ctx, key)
		if err != nil || rec == nil {
			t.Fatalf("get %s: %v %v", key, rec, err)
		}
		obj, err := runtime.Decode(s.codec, rec.value[len(testPrefix):])
		if err != nil {
			t.Fatal(err)
		}
		if p := obj.(*example.Pod); p.ResourceVersion != "" || p.SelfLink != "" {
			t.Errorf("stored object has resourceVersion %q selfLink %q", p.ResourceVersion, p.SelfLink)
		}
	})
}

func TestCreateWithTTL(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestCreateWithTTL(ctx, t, s)
}

func TestCreateWithKeyExist(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestCreateWithKeyExist(ctx, t, s)
}

func TestGet(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGet(ctx, t, s)
}

func TestUnconditionalDelete(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestUnconditionalDelete(ctx, t, s)
}

func TestConditionalDelete(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestConditionalDelete(ctx, t, s)
}

func TestDeleteWithSuggestion(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestDeleteWithSuggestion(ctx, t, s)
}

func TestDeleteWithSuggestionAndConflict(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestDeleteWithSuggestionAndConflict(ctx, t, s)
}

func TestDeleteWithSuggestionOfDeletedObject(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestDeleteWithSuggestionOfDeletedObject(ctx, t, s)
}

func TestValidateDeletionWithSuggestion(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestValidateDeletionWithSuggestion(ctx, t, s)
}

func TestValidateDeletionWithOnlySuggestionValid(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestValidateDeletionWithOnlySuggestionValid(ctx, t, s)
}

func TestDeleteWithConflict(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestDeleteWithConflict(ctx, t, s)
}

func TestPreconditionalDeleteWithSuggestion(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestPreconditionalDeleteWithSuggestion(ctx, t, s)
}

func TestPreconditionalDeleteWithSuggestionPass(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestPreconditionalDeleteWithOnlySuggestionPass(ctx, t, s)
}

// Not run: RunTestDeleteWithConflictAndMissingExpectedTransformOrDecodeError,
// RunTestDeleteExpectedTransformOrDecodeError,
// RunTestDeleteWithSuggestionAndMissingExpectedTransformOrDecodeError and
// RunTestWatchWithUnsafeDelete exercise the AllowUnsafeMalformedObjectDeletion
// feature (deleting objects storage cannot decode). This store refuses
// unsafe deletion instead: TerminalSessions are only ever written by this
// server, and NATS offers its own repair tools.

func TestListPaging(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestListPaging(ctx, t, s)
}

func TestGetListNonRecursive(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGetListNonRecursive(ctx, t, increaseRV(s), s)
}

func TestGetListRecursivePrefix(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGetListRecursivePrefix(ctx, t, s)
}

func TestKeySchema(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestKeySchema(ctx, t, s)
}

func TestGuaranteedUpdate(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGuaranteedUpdate(ctx, t, s, func(ctx context.Context, t *testing.T, key string) {
		rec, _, err := s.b.get(ctx, key)
		if err != nil || rec == nil {
			t.Fatalf("get %s: %v %v", key, rec, err)
		}
	})
}

func TestGuaranteedUpdateWithTTL(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGuaranteedUpdateWithTTL(ctx, t, s)
}

func TestGuaranteedUpdateChecksStoredData(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGuaranteedUpdateChecksStoredData(ctx, t, s)
}

func TestGuaranteedUpdateWithConflict(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGuaranteedUpdateWithConflict(ctx, t, s)
}

func TestGuaranteedUpdateWithSuggestionAndConflict(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGuaranteedUpdateWithSuggestionAndConflict(ctx, t, s)
}

func TestTransformationFailure(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestTransformationFailure(ctx, t, s)
}

func TestList(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestList(ctx, t, s, compaction(s), false, nil)
}

func TestConsistentList(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestConsistentList(ctx, t, s, increaseRV(s), false, true, false)
}

func TestCompactRevision(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestCompactRevision(ctx, t, s, increaseRV(s), compaction(s))
}

func TestListContinuation(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestListContinuation(ctx, t, s, nil)
}

func TestListPaginationRareObject(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestListPaginationRareObject(ctx, t, s, nil)
}

func TestListContinuationWithFilter(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestListContinuationWithFilter(ctx, t, s, nil)
}

func TestNamespaceScopedList(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestNamespaceScopedList(ctx, t, s)
}

func TestListInconsistentContinuation(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestListInconsistentContinuation(ctx, t, s, compaction(s))
}

func TestListResourceVersionMatch(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestListResourceVersionMatch(ctx, t, s)
}

func TestStats(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestStats(ctx, t, s, s.codec, s.xf(), true)
}
