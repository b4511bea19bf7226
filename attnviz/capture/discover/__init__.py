"""Discovery: the attention inside modules attnviz did not write, found with no edit to them
(:mod:`.discovery`): :mod:`.sites` (what is found, as data), :mod:`.read` (a tensor read as a
kind), :mod:`.probe` (the one probe forward), :mod:`.hooks` (capture-time hooks)."""
from .discovery import cam_layer_of, discover, own_model, sites_for_capture
from .sites import Discovery, Site, register_adapter, unregister_adapter

__all__ = ["Discovery", "Site", "cam_layer_of", "discover", "own_model", "register_adapter",
           "sites_for_capture", "unregister_adapter"]
