"""Every recipe's planned chunks at every preset, as cache keys with the training code fixed: the keys a refactor must keep.

`python benchmarks/cache_keys.py > keys.txt` before and after a change to the library; `diff` the two files. A chunk's real
key also holds the training code's hash (`provenance.training_hash()`), which any change to the engine's code changes; with
it fixed, equal keys mean the same configs, member tables and chunking — the same networks trained.
"""
import sys
from modmem.sweep import config_key, plan_sweep

def _registry():
    "(name, preset) → recipe object, through whichever lookup this version of modmem has."
    import modmem.recipes as R
    names = sorted(R.recipe_users()) if hasattr(R, 'recipe_users') else sorted(R.RECIPES)
    get = getattr(R, 'lookup', None) or R.recipe
    return names, get

def _sweeps(r):
    "(label, base, grid, chunk_size) of every sweep a recipe or study trains."
    if hasattr(r, 'sweeps'): return [(l, b, g, getattr(r, 'chunk_size', None)) for l, b, g in r.sweeps()]
    return [(r.name, r.base, r.grid, getattr(r, 'chunk_size', None))]

def main(presets=('smoke', 'quick', 'full')):
    names, get = _registry()
    for preset in presets:
        for name in names:
            try: r = get(name, preset)
            except Exception as e:
                print(preset, name, 'refused:', type(e).__name__); continue
            for label, base, grid, size in _sweeps(r):
                _, chunks = plan_sweep(base, grid, size)
                for i, c in enumerate(chunks): print(preset, label, i, config_key(c.config, c.members, None, 'fixed'))

if __name__ == '__main__': main(sys.argv[1:] or ('smoke', 'quick', 'full'))
