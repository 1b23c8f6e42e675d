"""Video modality (in progress, issue 7): the Moving MNIST generator (`mnist.py`)."""
