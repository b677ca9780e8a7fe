"""The shapes a GPU worker warms up for before its first job."""

from __future__ import annotations

from nst_engine.warmup import common_shapes, preset_scale_sizes, warm_up


def test_common_shapes_are_the_usual_aspects_both_ways_in_multiples():
    expected = [(512, 512), (512, 384), (384, 512), (512, 352), (352, 512), (512, 288), (288, 512)]
    assert common_shapes((512,), 32) == expected


def test_the_scales_of_two_scale_qualities_are_warmed():
    assert preset_scale_sizes() == (192, 256, 384, 512)  # fast's and balanced's scales


def test_warm_up_runs_each_shape(caffe_vgg):
    assert warm_up("cpu", (32,), 32) == [(32, 32)]
