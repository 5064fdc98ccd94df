"""hpo-service: distributed hyperparameter optimisation for PyTorch image classifiers.

Data flows one way: search space -> optimizer/master -> dispatcher -> worker -> trainer -> result
-> result log -> analysis. This package is the master side and the records shared with workers;
it never imports ``workers``, ``analysis`` or ``launch``.
"""

__version__ = "0.1.0"
