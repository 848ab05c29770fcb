from setuptools import setup

setup(name="setup-py-app", version="1.0", py_modules=["web_helpers"], install_requires=["six==1.16.0"])
