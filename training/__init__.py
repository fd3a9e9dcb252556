"""imagegate training and evaluation: datasets, synthetic damage, the v1/v2 recipes, the metrics
of the model card, the product-photo set and int8 calibration (``python -m training.<module>``).

Owns everything that needs the training datasets or the ``train`` extras (scipy, scikit-learn,
scikit-image, OpenCV). May import ``model`` (the network, checkpoint, preprocessing, runtimes,
export) and ``consumer`` (decode, policy, events, config, work: the product-photo set runs the
worker's own steps). Nothing imports ``training``, at module level or inside a function: not
``model``, ``consumer`` or ``producer_tools`` (the worker image does not ship it); only tests and
bench do (tests/unit/test_layering.py checks this).
"""
