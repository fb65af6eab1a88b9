"""An atlas of a whole network: the job as independent chunks (:mod:`.plan`), each chunk's compute
(:mod:`.compute`), and dataset examples from real photos (:mod:`.examples`). Files and pages are the
edge's (:mod:`jaxvis.edge.store`, :mod:`jaxvis.edge.atlas_out`, :mod:`jaxvis.edge.site`)."""
from jaxvis.atlas.examples import Examples, dataset_examples
from jaxvis.atlas.plan import AtlasConfig, Chunk, assign, chunks, fingerprint, layer_costs

__all__ = ['AtlasConfig', 'Chunk', 'assign', 'chunks', 'fingerprint', 'layer_costs', 'Examples', 'dataset_examples']
