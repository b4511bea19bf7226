"""One number, one computation: the Inspect tab's scores and the Compare tab's table come from the
library's one call (attnviz.score_analysis) on the same maps, so they agree."""
import pytest

from attnviz.app import views as V
from attnviz.app.analysis import analyse
from attnviz.app.compare_tab import TABLE_HEADERS, run_compare
from attnviz.app.scores_view import _scores

EXAMPLE = "assets/examples/star.png"
COLUMNS = ["model", "weights", "prediction", "attention map", "ρ with attribution",
           "pointing: attention", "pointing: attribution"]
assert len(COLUMNS) == len(TABLE_HEADERS)


@pytest.mark.parametrize("method", ["gradcam", pytest.param("layercam", marks=pytest.mark.slow)])
def test_inspect_and_compare_report_the_same_scores(method):
    compare = run_compare(EXAMPLE, ["lite_cbam", "lite_sge"], "strongest", method,
                          "per map")["cmp_table"]
    # columns by position: model, weights, prediction, map, rho, pointing (map), (attribution)
    rows = {r[0]: dict(zip(COLUMNS, r)) for r in compare.values.tolist()}
    for name in ("lite_cbam", "lite_sge"):
        sess = analyse(EXAMPLE, name, method)
        head = V.headline_record(sess.analysis.maps)
        caption = f"{V.map_caption(head, sess.analysis.maps)} vs {V.method_name(method)}"
        inspect_rows = {(s, m): v for s, m, v in _scores(sess, False)["rows"]}
        rho = inspect_rows[("rank correlation", caption)]
        assert isinstance(rho, float) and rows[name]["ρ with attribution"] == rho, name
        library = sess.analysis.agreement(head, method)
        assert round(library, 3) == rho
        # the example's object mask is known: pointing agrees too
        point = inspect_rows[("pointing game", V.map_caption(head, sess.analysis.maps))]
        assert rows[name]["pointing: attention"] == point
        assert rows[name]["pointing: attribution"] == inspect_rows[("pointing game",
                                                                    V.method_name(method))]


@pytest.mark.slow
def test_compare_explains_the_class_and_layer_asked():
    """Compare's optional class and layer: every model explains that class at that layer, and
    its scores are still the library's on those maps."""
    out = run_compare(EXAMPLE, ["lite_cbam", "lite_sge"], "strongest", "layercam", "per map",
                      "triangle", "layer3")
    rows = {r[0]: dict(zip(COLUMNS, r)) for r in out["cmp_table"].values.tolist()}
    for name in ("lite_cbam", "lite_sge"):
        sess = analyse(EXAMPLE, name, "layercam", "triangle", "layer3")
        att = sess.analysis.attributions["layercam"]
        assert (att.target, att.layer) == (1, "layer3")
        head = V.headline_record(sess.analysis.maps)
        assert rows[name]["ρ with attribution"] == round(sess.analysis.agreement(head,
                                                                                 "layercam"), 3)
    with pytest.raises(Exception, match="(?i)no class named 'dog'"):
        run_compare(EXAMPLE, ["lite_cbam", "lite_sge"], "strongest", "layercam", "per map",
                    "dog", None)
