from configparser import ConfigParser
import setuptools, shlex

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']
cfg_keys = 'version description keywords author author_email'.split()
for o in cfg_keys + 'lib_name user branch license status min_python audience language'.split(): assert o in cfg, o
setup_cfg = {o: cfg[o] for o in cfg_keys}
licenses = {'apache2': 'Apache-2.0', 'mit': 'MIT', 'gpl3': 'GPL-3.0-only', 'bsd3': 'BSD-3-Clause'}
statuses = ['0 - Pre-Planning', '1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta',
            '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()
min_python = cfg['min_python']
lib_path = cfg.get('lib_path', cfg['lib_name'])

setuptools.setup(
    name=cfg['lib_name'], license=licenses.get(cfg['license'].lower(), cfg['license']),
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title()]
                + ['Programming Language :: Python :: ' + o for o in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    # the experiment notebooks ship inside the package as modmem/notebooks/, so `modmem reproduce` runs from an install
    packages=setuptools.find_packages(include=[lib_path, lib_path + '.*']) + [lib_path + '.notebooks'],
    package_dir={lib_path + '.notebooks': 'experiments'}, package_data={lib_path + '.notebooks': ['*.ipynb']},
    include_package_data=True, install_requires=shlex.split(cfg.get('requirements', '')),
    extras_require={'dev': shlex.split(cfg.get('dev_requirements', '')),
                    'reproduce': shlex.split(cfg.get('reproduce_requirements', ''))}, python_requires='>=' + min_python,
    long_description=open('README.md', encoding='utf-8').read(), long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': cfg.get('console_scripts', '').split(),
                  'nbdev': [f'{lib_path}={lib_path}._modidx:d']},
    **setup_cfg)
