package chaos

import "testing"

// TestProviderRefuseEvery checks that the events made to be refused are
// exactly one in each RefuseEvery bodies, the first included, whatever the
// random mix of the others.
func TestProviderRefuseEvery(t *testing.T) {
	for _, tc := range []struct{ bodies, every, want int }{
		{160, 20, 8},
		{161, 20, 9},
		{1, 20, 1},
		{100, 0, 0},
	} {
		p := NewProvider(nil, Secret, "refuse")
		p.RefuseEvery = tc.every
		var bodies []*Body
		for i := range tc.bodies {
			bodies = append(bodies, p.nextBody(i))
		}
		if err := p.Err(); err != nil {
			t.Fatal(err)
		}
		refused := p.RefusedKeys()
		if len(refused) != tc.want {
			t.Errorf("%d bodies, RefuseEvery %d: %d events made to be refused, want %d", tc.bodies, tc.every, len(refused), tc.want)
		}
		for i, b := range bodies {
			if tc.every > 0 && i%tc.every == 0 && (len(b.Keys) == 0 || !p.Refused(b.Keys[0])) {
				t.Errorf("body %d: its first event is not one to refuse: %v", i, b.Keys)
			}
		}
		items := p.Items()
		for key := range refused {
			if items[key] == nil {
				t.Errorf("%s is to be refused but was never sent", key)
			}
		}
	}
}
